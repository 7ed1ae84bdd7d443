"""One send to a user with a phone on each platform and a browser: every device gets it, once."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest
from py_vapid import Vapid

from notifier import send_notification
from notifier.channels.webpush import private_key, public_key
from notifier.state.devices import Devices
from notifier.state.inbox import Inbox
from tests.peers.apns import ApnsPeer
from tests.peers.broker import Isolated, isolated
from tests.peers.fcm import FcmPeer
from tests.peers.webpush import WebPushPeer
from tests.support.helpers import Worker, uid, wait_for

Peers = tuple[FcmPeer, ApnsPeer, WebPushPeer, dict[str, str]]
"""The three fake providers, and the settings that point notifier at all of them."""


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    vapid = Vapid()
    vapid.generate_keys()
    fcm, apns = FcmPeer().start(), ApnsPeer(tmp_path_factory.mktemp("apns")).start()
    push = WebPushPeer(public_key(vapid)).start()
    env = {**fcm.env(fcm.service_account(tmp_path_factory.mktemp("fcm") / "sa.json")), **apns.env(),
           "NOTIFIER_VAPID_PRIVATE_KEY": private_key(vapid), "NOTIFIER_VAPID_PUBLIC_KEY": public_key(vapid)}
    yield fcm, apns, push, env
    for peer in (fcm, apns, push):
        peer.stop()


@pytest.fixture(scope="module")
def stack(peers: Peers) -> Iterator[Isolated]:
    yield from isolated(peers[3])


@pytest.fixture(scope="module")
def worker(stack: Isolated, peers: Peers) -> Worker:
    return stack.worker(peers[3])


def test_send_reaches_inbox_and_every_device_once(worker: Worker, peers: Peers) -> None:
    fcm, apns, push, _ = peers
    user, lurker = uid(), uid()
    android, iphone, browser = f"fcm-{uuid.uuid4().hex}", secrets.token_hex(32), push.subscribe()
    devices = Devices()
    devices.register(user, {"platform": "fcm", "token": android})
    devices.register(user, {"platform": "apns", "token": iphone})
    devices.register(user, {"platform": "webpush", "subscription": browser})
    notification = {"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped"}
    sent = send_notification.delay(user, notification)
    send_notification.delay(lurker, notification)
    wait_for(lambda: fcm.to(android) and apns.to(iphone) and push.to(browser), message="a push on every device")
    assert fcm.to(android)[0].message["data"]["notification_id"] == sent.id
    assert apns.to(iphone)[0].payload["id"] == sent.id
    assert push.to(browser)[0].json["id"] == sent.id
    wait_for(lambda: Inbox().unread_count(user) == 1 and Inbox().unread_count(lurker) == 1, message="inboxes")
    assert [len(fcm.to(android)), len(apns.to(iphone)), len(push.to(browser))] == [1, 1, 1]
    for channel in ("fcm", "apns", "webpush"):
        tasks = [line for line in worker.output if f"Task notifier.deliver.{channel}[" in line and "received" in line]
        assert len(tasks) == 1, f"a {channel} task for the user without devices"
