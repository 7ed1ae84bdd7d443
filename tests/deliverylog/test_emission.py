"""The delivery log's events as real workers record them, read back from the Redis buffer stream:
one notification's timeline on three channels (a retry, a pruned device, the providers' message
ids), one stream entry per broadcast batch, the reasons a send is skipped or held, dead-letter
replays and workflow steps."""

from __future__ import annotations

import secrets
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from notifier import broadcast, send_bulk, send_notification
from notifier.deliverylog.events import Event, decode_entry
from notifier.redis.store import get_keys, get_redis
from notifier.state.devices import Devices
from notifier.state.preferences import PreferenceStore
from tests.peers.apns import ApnsPeer
from tests.peers.broker import Isolated, isolated
from tests.peers.fcm import FcmPeer
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, quiet_hours_around_now, uid, wait_for

Peers = tuple[FcmPeer, ApnsPeer, dict[str, str]]


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpPeer) -> Iterator[Peers]:
    fcm, apns = FcmPeer().start(), ApnsPeer(tmp_path_factory.mktemp("apns")).start()
    env = {**fcm.env(fcm.service_account(Path(tmp_path_factory.mktemp("fcm")) / "sa.json")), **apns.env(),
           **smtp.env()}
    yield fcm, apns, env
    fcm.stop()
    apns.stop()


@pytest.fixture(scope="module")
def stack(peers: Peers) -> Iterator[Isolated]:
    yield from isolated(peers[2])


@pytest.fixture(scope="module")
def worker(stack: Isolated, peers: Peers) -> Worker:
    return stack.worker(peers[2], "router,realtime,fcm,apns,email")


def entries() -> list[list[Event]]:
    """Every stream entry's events, oldest first."""
    return [decode_entry(fields) for _, fields in get_redis().xrange(get_keys().events())]


def events_of(nid: str) -> list[Event]:
    """The notification's events in the order they happened (the stream has them in the order
    their tasks ended)."""
    return sorted((e for entry in entries() for e in entry if e.notification_id == nid), key=lambda e: e.at)


def timeline(events: list[Event]) -> dict[tuple[str | None, str | None], list[str]]:
    """The kinds of events per (channel, target), in the order recorded."""
    out: dict[tuple[str | None, str | None], list[str]] = defaultdict(list)
    for e in events:
        out[(e.channel, e.target)].append(e.kind)
    return dict(out)


@dataclass
class ThreeChannels:
    """A send to a user with an email address, two phones and an iPhone: the old phone is gone at FCM
    (pruned), APNs answers the iPhone 503 once (retried)."""

    user: str
    address: str
    phone: str
    iphone: str
    kept: str
    gone: str
    apple: str
    nid: str


def three_channels(fcm: FcmPeer, apns: ApnsPeer) -> ThreeChannels:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address})
    devices = Devices()
    phone, old_phone, iphone = f"fcm-{uuid.uuid4().hex}", f"fcm-{uuid.uuid4().hex}", secrets.token_hex(32)
    kept = devices.register(user, {"platform": "fcm", "token": phone}).id
    gone = devices.register(user, {"platform": "fcm", "token": old_phone}).id
    apple = devices.register(user, {"platform": "apns", "token": iphone}).id
    fcm.refuse(old_phone, "unregistered")
    apns.fail(iphone, "unavailable")
    nid = send_notification.delay(user, {"type": "order_update", "title": "Order shipped", "body": "#12345",
                                         "channels": ["fcm", "apns", "email"]}).id
    return ThreeChannels(user, address, phone, iphone, kept, gone, apple, nid)


def test_one_notification_on_three_channels_with_a_retry_and_a_pruned_device(worker: Worker, peers: Peers,
                                                                              smtp: SmtpPeer) -> None:
    fcm, apns, _ = peers
    t = three_channels(fcm, apns)
    user, address, phone, iphone, kept, gone, apple = t.user, t.address, t.phone, t.iphone, t.kept, t.gone, t.apple
    devices = Devices()

    def done() -> list[Event]:
        found = events_of(t.nid)
        return found if sum(e.kind in ("sent", "pruned") for e in found) == 4 else []

    found = wait_for(done, timeout=20, message="sent on every target, the old phone pruned")
    assert timeline(found) == {
        (None, None): ["accepted"],
        ("fcm", None): ["queued"], ("fcm", kept): ["sent"], ("fcm", gone): ["pruned"],
        ("apns", None): ["queued"], ("apns", apple): ["retried", "sent"],
        ("email", None): ["queued"], ("email", address): ["sent"],
    }
    by = {(e.kind, e.channel, e.target): e for e in found}
    assert by[("accepted", None, None)].detail == {"idempotency": "none"}
    assert by[("sent", "fcm", kept)].detail == {"provider_id": fcm.to(phone)[0].name}
    assert by[("sent", "apns", apple)].detail == {"provider_id": apns.to(iphone)[0].headers["apns-id"]}
    assert by[("sent", "email", address)].detail["provider_id"] in smtp.handler.queue_ids
    retried = by[("retried", "apns", apple)].detail
    assert retried["attempt"] == 1 and retried["delay"] > 0 and "503" in retried["error"]
    assert "UNREGISTERED" in by[("pruned", "fcm", gone)].detail["error"]
    assert {e.user_id for e in found} == {user} and {e.type for e in found} == {"order_update"}
    assert [d.id for d in devices.list(user)] and gone not in [d.id for d in devices.list(user)]


def test_a_broadcast_batch_is_one_stream_entry(worker: Worker) -> None:
    users = [uid() for _ in range(500)]
    bid = broadcast({"type": "news", "title": "Hello", "channels": ["realtime"]}, user_ids=users)

    def batches() -> list[list[Event]]:
        found = [[e for e in entry if e.notification_id == bid] for entry in entries()]
        found = [b for b in found if b]
        return found if sum(e.kind == "sent" for b in found for e in b) == 500 else []

    found = wait_for(batches, timeout=20, message="the broadcast delivered to 500 inboxes")
    assert len(found) == 1, "one router batch of 500 with its inline inbox delivery: one stream entry"
    kinds = [e.kind for e in found[0]]
    assert (kinds.count("accepted"), kinds.count("queued"), kinds.count("sent")) == (500, 500, 500)
    assert {e.user_id for e in found[0] if e.kind == "sent"} == set(users)


def test_skipped_and_held_sends_say_why(worker: Worker) -> None:
    muted, off, no_address, no_phone, quiet, twice, busy = (uid() for _ in range(7))
    prefs = PreferenceStore()
    prefs.set(muted, {"disabled_types": ["promo"], "email": f"{muted}@example.test"})
    prefs.set(off, {"channels": {"email": False}})
    prefs.set(quiet, {"quiet_hours": quiet_hours_around_now(), "email": f"{quiet}@example.test"})
    prefs.set(busy, {"email": f"{busy}@example.test"})
    promo: dict[str, Any] = {"type": "promo", "title": "Sale", "channels": ["email", "fcm"]}
    key = uid("key")
    send_bulk([(muted, promo), (off, promo), (no_address, promo), (no_phone, promo), (quiet, promo),
                     (twice, {**promo, "channels": ["realtime"]}, key),
                     (twice, {**promo, "channels": ["realtime"], "title": "again"}, key),
                     *((busy, {**promo, "channels": ["email"], "title": f"mail {i}"}) for i in range(4))])

    senders = {muted, off, no_address, no_phone, quiet, twice, busy}

    def decided() -> list[Event]:
        found = [e for entry in entries() for e in entry if e.user_id in senders]
        return found if sum(e.kind == "accepted" for e in found) == 11 else []

    found = wait_for(decided, timeout=20, message="every send routed")
    why = {(e.user_id, e.channel, e.kind, e.detail.get("reason")) for e in found}
    assert (muted, None, "skipped", "type_disabled") in why
    assert (off, "email", "skipped", "channel_disabled") in why and (off, "fcm", "skipped", "no_device") in why
    assert (no_address, "email", "skipped", "no_address") in why and (no_phone, "fcm", "skipped", "no_device") in why
    held = [e for e in found if e.user_id == quiet and e.kind == "held"]
    assert [(e.channel, e.detail["reason"]) for e in held] == [("email", "quiet_hours")]
    assert held[0].detail["until"] > held[0].at
    accepted = sorted(e.detail["idempotency"] for e in found if e.user_id == twice and e.kind == "accepted")
    assert accepted == ["duplicate", "new"]
    assert (twice, None, "skipped", "deduplicated") in why
    busy_email = [(e.kind, e.detail.get("reason")) for e in found
                  if e.user_id == busy and e.channel == "email" and e.kind in ("queued", "held")]
    assert busy_email == [("queued", None)] * 3 + [("held", "rate_limited")], "the email limit is 3 a minute"
    limited = next(e for e in found if e.user_id == busy and e.kind == "held")
    assert limited.detail["until"] == pytest.approx(limited.at + 60, abs=1)
