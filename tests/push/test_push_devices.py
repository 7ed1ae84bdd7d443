"""The device registry on real Redis, and its CLI (``notifier devices``, ``notifier vapid``)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifier.channels import ALL_TARGETS, Delivery, get_channel
from notifier.errors import ValidationError
from notifier.models import Notification
from notifier.redis.store import get_keys
from notifier.state.devices import Devices
from tests.support.helpers import uid

APNS_TOKEN = "a1" * 32


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def subscription(endpoint: str = "https://push.example/sub/1") -> dict[str, object]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    raw = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": b64url(raw), "auth": b64url(os.urandom(16))}}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifier.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=60)


def test_register_list_remove(redis_client: redis.Redis) -> None:
    user, devices = uid(), Devices()
    fcm = devices.register(user, {"platform": "fcm", "token": "fcm-token-0123456789abcdef"})
    apns = devices.register(user, {"platform": "apns", "token": APNS_TOKEN.upper(), "topic": "com.example.app"})
    web = devices.register(user, {"platform": "webpush", "subscription": subscription()})
    assert [d.platform for d in devices.list(user)] == ["fcm", "apns", "webpush"]
    assert {fcm.id.split("-")[0], apns.id.split("-")[0], web.id.split("-")[0]} == {"fcm", "apns", "webpush"}
    assert apns.token == APNS_TOKEN and apns.topic == "com.example.app"
    assert web.subscription is not None and web.subscription.endpoint == "https://push.example/sub/1"
    assert redis_client.sismember(get_keys().users(), user)
    assert set(redis_client.hkeys(get_keys().devices(user))) == {fcm.id, apns.id, web.id}
    assert devices.remove(user, apns.id) is True
    assert devices.remove(user, apns.id) is False
    assert [d.id for d in devices.list(user)] == [fcm.id, web.id]


def test_reregistering_updates_never_duplicates() -> None:
    user, devices = uid(), Devices()
    first = devices.register(user, {"platform": "apns", "token": APNS_TOKEN})
    time.sleep(0.01)
    again = devices.register(user, {"platform": "apns", "token": f"<{APNS_TOKEN.upper()}>", "topic": "com.example.b"})
    assert again.id == first.id
    assert again.created_at == first.created_at and again.last_seen > first.last_seen
    assert [(d.id, d.topic) for d in devices.list(user)] == [(first.id, "com.example.b")]
    sub = subscription()
    web = devices.register(user, {"platform": "webpush", "subscription": sub})
    rotated = {**sub, "keys": subscription()["keys"]}
    assert devices.register(user, {"platform": "webpush", "subscription": rotated}).id == web.id
    stored = devices.get(user, web.id)
    assert stored is not None and stored.subscription is not None
    assert stored.subscription.keys == rotated["keys"]
    assert len(devices.list(user)) == 2


def test_many_devices_per_platform_and_bad_input() -> None:
    user, devices = uid(), Devices()
    ids = {devices.register(user, {"platform": "fcm", "token": f"fcm-token-{i:04d}-abcdefgh"}).id for i in range(3)}
    assert len(ids) == 3
    assert {d.id for d in devices.for_users([user], "fcm")[user]} == ids
    assert devices.for_users([user], "apns")[user] == []
    with pytest.raises(ValidationError, match="invalid device: .*needs a token"):
        devices.register(user, {"platform": "apns"})
    with pytest.raises(ValidationError, match="invalid user id"):
        devices.register("", {"platform": "fcm", "token": "fcm-token-0123456789abcdef"})
    with pytest.raises(ValidationError, match="colour: Extra inputs are not permitted"):
        devices.register(user, {"platform": "fcm", "token": "fcm-token-0123456789abcdef", "colour": "red"})


def test_expand_one_delivery_per_device_of_the_platform() -> None:
    alice, bob, carol = uid(), uid(), uid()
    devices = Devices()
    a = [devices.register(alice, {"platform": "fcm", "token": f"alice-token-{i}-0123456789"}).id for i in range(2)]
    devices.register(alice, {"platform": "apns", "token": APNS_TOKEN})
    b = devices.register(bob, {"platform": "fcm", "token": "bob-token-0123456789abc"}).id
    n = Notification(type="t", title="hi")
    expanded = get_channel("fcm").expand([Delivery(alice, n), Delivery(bob, n), Delivery(carol, n),
                                          Delivery(bob, n, "fcm-already-expanded")])
    assert sorted((d.user_id, d.target) for d in expanded) == sorted(
        [(alice, a[0]), (alice, a[1]), (bob, b), (bob, "fcm-already-expanded")])
    assert all(d.target != ALL_TARGETS for d in expanded)


def test_cli_devices_add_list_remove() -> None:
    user = uid()
    added = cli("devices", "add", user, "--platform", "apns", "--token", APNS_TOKEN, "--topic", "com.example.app")
    assert added.returncode == 0, added.stderr
    device_id = added.stdout.strip()
    assert device_id.startswith("apns-")
    sub = json.dumps(subscription())
    assert cli("devices", "add", user, "--platform", "webpush", "--subscription", sub).returncode == 0
    listed = cli("devices", "list", user, "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert [d["platform"] for d in found] == ["apns", "webpush"] and found[0]["id"] == device_id
    assert device_id in cli("devices", "list", user).stdout
    assert cli("devices", "remove", user, device_id).returncode == 0
    missing = cli("devices", "remove", user, device_id)
    assert missing.returncode == 1 and f"has no device {device_id}" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_cli_devices_errors_are_one_line() -> None:
    user = uid()
    both = cli("devices", "add", user, "--platform", "fcm")
    assert both.returncode == 1 and "exactly one of --token" in both.stderr
    bad = cli("devices", "add", user, "--platform", "webpush", "--subscription", "{nope")
    assert bad.returncode == 1 and "--subscription: invalid JSON at position 1" in bad.stderr
    invalid = cli("devices", "add", user, "--platform", "webpush", "--subscription", '{"endpoint": "ftp://x"}')
    assert invalid.returncode == 1 and "https URL" in invalid.stderr
    assert all("Traceback" not in r.stderr for r in (both, bad, invalid))


def test_cli_vapid_generate_prints_a_usable_pair() -> None:
    from py_vapid import Vapid

    result = cli("vapid", "generate")
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.strip().splitlines())
    assert set(env) == {"NOTIFIER_VAPID_PRIVATE_KEY", "NOTIFIER_VAPID_PUBLIC_KEY"}
    public = base64.urlsafe_b64decode(env["NOTIFIER_VAPID_PUBLIC_KEY"] + "==")
    assert len(public) == 65 and public[0] == 4
    vapid = Vapid.from_string(env["NOTIFIER_VAPID_PRIVATE_KEY"])
    raw = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert raw == public
