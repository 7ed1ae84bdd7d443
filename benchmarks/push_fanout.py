"""Figure 6: fan-out per channel, 10,000 FCM, web push, SMS and Slack deliveries to the local protocol peers.

The peers are the test suite's (``tests/peers/fcm.py``: OAuth + HTTP v1 checks; ``tests/peers/webpush.py``:
decrypts aes128gcm and verifies VAPID like a browser; ``tests/peers/twilio.py``: Twilio's Messages API
with basic auth; ``tests/peers/slack.py``: ``chat.postMessage`` with the bot token and Block Kit
checks), each run in a process of its own, one after another in the same run, so SMS and Slack are
measured next to FCM. One broadcast to 10,000 users with one target each (a device, a phone number in
their preferences, a Slack member id) goes router -> the channel's tasks (``-P prefork -c 2``) -> the
peer. Reported: deliveries/s per worker process, where the CPU went, and, separately, what web push
encryption and VAPID signing cost per delivery (measured in this process).

    python -m benchmarks.push_fanout [--deliveries 10000] [--platforms fcm,webpush,sms,slack] [--runs 3]
"""

from __future__ import annotations

import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, users
from benchmarks.harness.drain import wait_drained
from benchmarks.harness.meters import CpuMeter, process_cpu, wait_quiet
from benchmarks.harness.processes import Spawned, start_workers
from benchmarks.harness.profiling import profile
from benchmarks.harness.report import Figure, arguments, report

CONCURRENCY = 2


def _peer_main(platform: str, argument: str, subscriptions: int, conn: Connection) -> None:
    """Run one peer in this (spawned) process and answer ``count`` and ``stop`` over the pipe."""
    if platform == "fcm":
        from tests.peers.fcm import FcmPeer

        peer: Any = FcmPeer().start()
        credentials = peer.service_account(Path(argument))
        conn.send(peer.env(credentials))
    elif platform == "sms":
        from tests.peers.twilio import TwilioPeer

        peer = TwilioPeer().start()
        conn.send(peer.env())
    elif platform == "slack":
        from tests.peers.slack import SlackPeer

        peer = SlackPeer().start()
        conn.send(peer.env())
    else:
        from tests.peers.webpush import WebPushPeer

        peer = WebPushPeer(argument).start()
        conn.send([peer.subscribe() for _ in range(subscriptions)])
    while True:
        command = conn.recv()
        if command == "count":
            with peer.state.lock:
                conn.send(len(peer.state.received))
        elif command == "stop":
            peer.stop()
            conn.send("stopped")
            return


class Peer(Spawned):
    """One of the test suite's protocol peers in a process of its own; ``setup`` is what it sent first
    (the FCM settings, or the web push subscriptions)."""

    def __init__(self, platform: str, argument: str, subscriptions: int = 0) -> None:
        super().__init__(_peer_main, platform, argument, subscriptions)
        self.setup = self.conn.recv()

    def count(self) -> int:
        self.conn.send("count")
        return int(self.conn.recv())


def register(platform: str, recipients: list[str], addresses: list[Any]) -> None:
    """Give each recipient its target: a phone number in its preferences (SMS), else a device."""
    from notifier.state.devices import Devices
    from notifier.state.preferences import PreferenceStore

    if platform == "sms":
        prefs = PreferenceStore()
        for user, address in zip(recipients, addresses, strict=True):
            prefs.set(user, {"phone": address})
        return
    devices = Devices()
    for user, address in zip(recipients, addresses, strict=True):
        key = "subscription" if platform == "webpush" else "token"
        devices.register(user, {"platform": platform, key: address})


def crypto_cost(subscriptions: list[dict[str, Any]], vapid_key: Any, count: int = 2000) -> dict[str, float]:
    """Microseconds per delivery: aes128gcm encryption (ECDH + HKDF + AES-GCM) and the VAPID JWT."""
    from pywebpush import WebPusher

    data = b'{"title":"Push","body":"Something happened.","data":{"seq":1}}'
    start = time.perf_counter()
    for i in range(count):
        WebPusher(subscriptions[i % len(subscriptions)]).encode(data, content_encoding="aes128gcm")
    encrypt = (time.perf_counter() - start) / count * 1e6
    start = time.perf_counter()
    for _ in range(count):
        vapid_key.sign({"aud": "http://127.0.0.1", "sub": "mailto:bench@notifier.test",
                        "exp": int(time.time()) + 3600})
    sign = (time.perf_counter() - start) / count * 1e6
    return {"encrypt_us": encrypt, "vapid_sign_us": sign}


def one_run(platform: str, run: int, count: int, worker: Any, peer: Peer, addresses: list[Any]) -> dict[str, float]:
    from notifier import broadcast

    recipients = users(f"push-{platform}{run}", count)
    register(platform, recipients, addresses)
    queues = ["router", platform]
    before = peer.count()
    wait_quiet()
    meter = CpuMeter([worker]).start()
    peer_cpu = process_cpu(peer.pid)
    start = time.time()
    broadcast({"type": "benchmark", "title": "Push", "body": "Something happened.", "data": {"seq": run},
               "channels": [platform]}, user_ids=recipients)
    wait_drained(queues, timeout=170, workers=[worker])
    end = time.time()
    used = meter.stop()
    got = peer.count() - before
    if got != count:
        raise RuntimeError(f"{platform}: the peer received {got} of {count}")
    rate = count / (end - start)
    return {"rate": rate, "per_process": rate / CONCURRENCY, "worker_cpu_us": used[worker.name] / count * 1e6,
            "peer_cpu_us": (process_cpu(peer.pid) - peer_cpu) / count * 1e6,
            "redis_cpu_us": used["redis-server"] / count * 1e6}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--platforms", default="fcm,webpush,sms,slack")
    args = parser.parse_args()
    from py_vapid import Vapid

    from notifier.channels.webpush import private_key, public_key

    vapid = Vapid()
    vapid.generate_keys()
    figures, series, crypto = [], {}, {}
    for platform in args.platforms.split(","):
        workdir = tempfile.mkdtemp(prefix="bench-push-")
        if platform == "fcm":
            peer = Peer("fcm", f"{workdir}/service-account.json")
            extra = dict(peer.setup)
            addresses: list[Any] = [f"fcm-bench-{i}:APA91b{i:012d}" for i in range(args.deliveries)]
        elif platform in ("sms", "slack"):
            peer = Peer(platform, "")
            extra = dict(peer.setup)
            addresses = ([f"+49151{i:08d}" for i in range(args.deliveries)] if platform == "sms"
                         else [f"U{i:010d}" for i in range(args.deliveries)])
        else:
            peer = Peer("webpush", public_key(vapid), args.deliveries)
            extra = {"NOTIFIER_VAPID_PRIVATE_KEY": private_key(vapid), "NOTIFIER_VAPID_PUBLIC_KEY": public_key(vapid),
                     "NOTIFIER_VAPID_SUBJECT": "mailto:bench@notifier.test"}
            addresses = peer.setup
            crypto = crypto_cost(addresses, vapid)
        env = bench_env(**extra)
        claim_and_flush()
        worker = start_workers(env, ["router", platform], concurrency=CONCURRENCY)
        stop_profile = profile(args.profile, f"push_fanout-{platform}", {"workers": worker.pid})
        rows = []
        try:
            for run in range(args.runs):
                clear_data()
                row = one_run(platform, run, args.deliveries, worker, peer, addresses)
                rows.append(row)
                print(f"{platform} run {run + 1}: {row['rate']:,.0f} deliveries/s = {row['per_process']:,.0f} per "
                      f"worker process; CPU per delivery: worker {row['worker_cpu_us']:.0f} us, peer "
                      f"{row['peer_cpu_us']:.0f} us, Redis {row['redis_cpu_us']:.0f} us")
        finally:
            stop_profile()
            worker.stop()
            peer.stop()
        series[platform] = rows
        figures.append(Figure(f"{platform}: deliveries/s per worker process", "deliveries/s",
                              [r["per_process"] for r in rows]))
        figures.append(Figure(f"{platform}: worker CPU per delivery", "us", [r["worker_cpu_us"] for r in rows],
                              higher_is_better=False))
    if crypto:
        print(f"web push crypto per delivery (this process): aes128gcm encryption {crypto['encrypt_us']:.0f} us, "
              f"VAPID signature {crypto['vapid_sign_us']:.0f} us")
        figures.append(Figure("web push aes128gcm encryption per delivery", "us", [crypto["encrypt_us"]],
                              higher_is_better=False))
        figures.append(Figure("web push VAPID signature per delivery", "us", [crypto["vapid_sign_us"]],
                              higher_is_better=False))
    report("push_fanout", figures, {"runs": series, "crypto": crypto,
                                    "settings": {"deliveries": args.deliveries, "concurrency": CONCURRENCY}})


if __name__ == "__main__":
    main()
