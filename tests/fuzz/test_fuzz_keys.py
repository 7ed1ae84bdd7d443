"""Ids and idempotency keys with odd characters never escape their namespace.

User ids, group ids and idempotency keys are free text that ends up inside Redis keys. Here they hold
glob characters, key separators, hash-tag braces, spaces, unicode and the spelling of another user's
key; they go through the real pipeline (a worker routes and delivers them), and then every key in the
store is read back: each must be exactly one that ``notifier.redis.keys`` names for its owner, and each
user's inbox must hold that user's notifications and nobody else's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from notifier import ValidationError, send_notification, send_to_group
from notifier.pipeline.queues import DRAIN_LOG, PRUNE_LOG, QUEUES
from notifier.pipeline.streams_transport import stream_key
from notifier.redis.keys import Keys
from notifier.state.groups import Groups
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, private_env, wait_for
from tests.support.redisdb import LOCK

PREFIX = "ns"
VICTIM = "victim"
ODD_USERS = ["*", "?", "[a-z]", "a:b", "{x}", "a}b", "}{", " spaced  id ", "ünï💥", "a\u2028b", "x" * 128,
             f"{PREFIX}:{{{VICTIM}}}:inbox", f"{VICTIM}}}:inbox", f"{VICTIM}}}:receipt:email"]
GROUP = "g:*{team} 1"


def is_broker_key(key: str) -> bool:
    """Celery's own keys: the test's broker shares the store's database."""
    return (key.startswith(("_kombu.", "unacked", "celery-task-meta-")) or key in QUEUES
            or key in {stream_key(q) for q in QUEUES})


@pytest.fixture
def stack(settings_env: Callable[[dict[str, str]], None], worker_factory: Callable[..., Worker],
          smtp: SmtpPeer) -> dict[str, str]:
    """Store and broker in a database of this test's own, so it holds only this test's keys."""
    env = {**private_env(), "NOTIFIER_KEY_PREFIX": PREFIX,
           "NOTIFIER_RATE_LIMITS": "realtime=1000/60,email=1000/60", **smtp.env()}
    settings_env(env)
    worker_factory(env, queues="router,realtime,email", concurrency=1)
    return env


def test_odd_ids_and_keys_write_only_their_own_keys(stack: dict[str, str], smtp: SmtpPeer) -> None:
    keys, prefs = Keys(PREFIX), PreferenceStore()
    users = [VICTIM, *ODD_USERS]
    address = {u: f"user{i}@example.test" for i, u in enumerate(users)}
    for u in users:
        prefs.set(u, {"email": address[u]})
    with pytest.raises(ValidationError):
        prefs.set("attacker", {"email": "a@b.c}:inbox"})
    Groups().add(GROUP, users)

    sent: dict[str, list[str]] = {u: [] for u in users}
    idempotency = {}
    for u in users:
        key = f"{u}|*:{{k}} ü"
        first = send_notification.delay(u, {"type": "direct", "title": f"for {u}"}, idempotency_key=key).id
        again = send_notification.delay(u, {"type": "direct", "title": "repeat"}, idempotency_key=key).id
        assert again == first, "the same key resolves to the first send"
        sent[u].append(first)
        idempotency[key] = first
    for key in ("k*", "k?", "k[", "k\\"):
        nid = send_notification.delay(VICTIM, {"type": "glob", "title": key}, idempotency_key=key).id
        sent[VICTIM].append(nid)
        idempotency[key] = nid
    group_nid = send_to_group(GROUP, {"type": "team", "title": "for the group"})
    for u in users:
        sent[u].append(group_nid)

    box = Inbox()
    total = sum(len(ids) for ids in sent.values())
    wait_for(lambda: sum(box.r.xlen(keys.inbox(u)) for u in users) >= total, timeout=30,
             message=f"{total} inbox entries")
    wait_for(lambda: len([m for m in smtp.messages if m["To"] in address.values()]) >= total, timeout=30,
             message=f"{total} emails")
    for u in users:
        got = Counter(fields["nid"] for _, fields in box.r.xrange(keys.inbox(u)))
        assert got == Counter(sent[u]), f"user {u!r} has exactly their own notifications"
    mails = Counter((str(m["To"]), str(m["X-Notification-Id"])) for m in smtp.messages if m["To"] in address.values())
    assert mails == Counter((address[u], nid) for u in users for nid in sent[u])

    expected = {keys.users(), keys.groups(), keys.group(GROUP)}
    expected |= {keys.idempotency(k) for k in idempotency}
    for u in users:
        expected |= {keys.inbox(u), keys.inbox_ids(u), keys.unread(u), keys.preferences(u),
                     keys.rate(u, "realtime"), keys.rate(u, "email")}
        expected |= {keys.receipt(u, "email", nid, address[u]) for nid in sent[u]}
    # the delivery log's buffer until drained, and the workers' periodic jobs once their loop has ticked
    passing = {keys.events(), keys.periodic(PRUNE_LOG), keys.periodic(DRAIN_LOG), keys.events_drain_lock()}
    written = {k for k in box.r.keys("*") if k != LOCK and not is_broker_key(k)}
    assert written - expected - passing == set(), "keys outside their owner's namespace"
    assert expected - written == set(), "keys that should exist"
    assert all(box.r.get(keys.idempotency(k)) == nid for k, nid in idempotency.items())
    assert box.r.type(keys.inbox(VICTIM)) == "stream"
