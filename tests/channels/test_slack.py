"""Slack end to end: a registered member or channel id -> router -> the slack task -> the Slack peer's
``chat.postMessage`` (``tests/peers/slack.py``), through a real worker; and the pure Block Kit mapping."""

from __future__ import annotations

import secrets
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier import broadcast, send_notification, send_to_group
from notifier.channels.base import Delivery
from notifier.channels.slack import SlackChannel
from notifier.config import Settings
from notifier.errors import InvalidTarget, PermanentError, RetryableError, ValidationError
from notifier.models import Notification
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import deliver_task
from notifier.redis.store import get_keys, get_redis
from notifier.state.devices import Devices, Registration
from notifier.state.groups import Groups, group_recipient
from notifier.state.preferences import PreferenceStore
from notifier.templates import Rendered
from tests.peers.broker import Isolated, isolated, task_summary
from tests.peers.slack import SlackPeer
from tests.support.helpers import Worker, dead_letters_naming, quiet_hours_around_now, uid, wait_for, wait_idle

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackPeer]:
    peer = SlackPeer().start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def stack(slack: SlackPeer) -> Iterator[Isolated]:
    yield from isolated(slack.env())


@pytest.fixture(scope="module")
def worker(stack: Isolated, slack: SlackPeer) -> Worker:
    return stack.worker({**slack.env(), "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "3"}, "router,slack")


def slack_id(kind: str = "U") -> str:
    return kind + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(10))


def register(recipient: str, *ids: str) -> list[str]:
    return [Devices().register(recipient, {"platform": "slack", "token": i}).id for i in ids]


def note(**extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped",
            "channels": ["slack"], **extra}



def delivery(**fields: object) -> Delivery:
    return Delivery("alice", Notification(**note(**fields)), "slack-x")


# Pure mapping ---------------------------------------------------------------------------------------
def test_payload_escapes_mrkdwn_so_no_mention_or_link_markup_gets_through() -> None:
    payload = SlackChannel(Settings()).build_payload(delivery(
        title="Deploy <prod> & more", body="<!channel> see <https://evil.test|here> & <@U024BE7LH>",
        action_url="https://shop.test/orders/12345"))
    header, section, actions = payload["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "Deploy <prod> & more", "emoji": True}}
    assert section["text"] == {"type": "mrkdwn", "text": "&lt;!channel&gt; see &lt;https://evil.test|here&gt; "
                                                         "&amp; &lt;@U024BE7LH&gt;"}
    assert actions == {"type": "actions", "elements": [{
        "type": "button", "action_id": "open", "url": "https://shop.test/orders/12345",
        "text": {"type": "plain_text", "text": "Open", "emoji": True}}]}
    assert payload["text"] == ("Deploy &lt;prod&gt; &amp; more\n&lt;!channel&gt; see &lt;https://evil.test|here&gt; "
                               "&amp; &lt;@U024BE7LH&gt;")
    assert "<" not in payload["text"] and "<" not in section["text"]["text"]


def test_payload_without_link_or_body_has_no_button_or_section_and_fits_the_limits() -> None:
    channel = SlackChannel(Settings())
    assert [b["type"] for b in channel.build_payload(delivery(body=""))["blocks"]] == ["header"]
    assert [b["type"] for b in channel.build_payload(delivery(action_url="/relative"))["blocks"]] == [
        "header", "section"]
    long = channel.build_payload(delivery(title="T" * 256, body="&" * 4000))
    assert len(long["blocks"][0]["text"]["text"]) == 150
    text = long["blocks"][1]["text"]["text"]
    assert len(text) <= 3000 and text.endswith("…") and text[:-1].replace("&amp;", "") == ""


def test_payload_uses_the_rendered_text() -> None:
    d = Delivery("alice", Notification(**note()), "slack-x", Rendered(title="Bestellung versandt", body="Unterwegs"))
    header, section = SlackChannel(Settings()).build_payload(d)["blocks"]
    assert header["text"]["text"] == "Bestellung versandt" and section["text"]["text"] == "Unterwegs"


def test_targets_register_as_member_or_channel_ids() -> None:
    for good in ("U024BE7LH", "W0123ABCDEF", "C0123ABCD", "G0123ABCD", "D0123ABCD"):
        assert Registration(platform="slack", token=good).token == good
    for bad in ("#general", "u024be7lh", "U12", "https://hooks.slack.com/services/T/B/x"):
        with pytest.raises(ValueError, match="member id"):
            Registration(platform="slack", token=bad)
    with pytest.raises(ValueError, match="needs a token"):
        Registration(platform="slack", url="https://hooks.slack.com/services/T/B/x")


# Through the worker ----------------------------------------------------------------------------------
def test_member_and_channel_get_the_message_with_blocks(worker: Worker, slack: SlackPeer) -> None:
    user, member, channel = uid(), slack_id("U"), slack_id("C")
    register(user, member, channel)
    send_notification.delay(user, note(body="a <b> & c", action_url="https://shop.test/orders/12345"))
    for target in (member, channel):
        [got] = wait_for(lambda t=target: slack.to(t), message=f"message to {target}")
        assert got.headers["Authorization"] == f"Bearer {slack.token}"
        assert got.body["channel"] == target
        assert got.body["text"] == "Order Shipped\na &lt;b&gt; &amp; c"
        assert [b["type"] for b in got.body["blocks"]] == ["header", "section", "actions"]
        assert got.body["blocks"][2]["elements"][0]["url"] == "https://shop.test/orders/12345"
    assert slack.state.problems == []


@pytest.mark.parametrize(("answer", "error", "says"), [
    ("channel_not_found", InvalidTarget, "gone"),
    ("is_archived", InvalidTarget, "gone"),
    ("user_not_found", InvalidTarget, "gone"),
    ("account_inactive", InvalidTarget, "gone"),
    ("invalid_auth", PermanentError, "NOTIFIER_SLACK_BOT_TOKEN"),
    ("not_in_channel", PermanentError, "/invite"),
    ("msg_too_long", PermanentError, "rejected"),
    ("ratelimited", RetryableError, "429 ratelimited"),
    ("internal_error", RetryableError, "503 service_unavailable"),
])
def test_each_slack_answer_maps_to_its_error(stack: Isolated, slack: SlackPeer, answer: str,
                                             error: type[Exception], says: str) -> None:
    user, target = uid(), slack_id("C")
    [device] = register(user, target)
    slack.refuse(target, answer)
    try:
        [outcome] = SlackChannel().send([Delivery(user, Notification(**note()), device)])
    finally:
        slack.state.always.pop(target)
        Devices().remove(user, device)
    assert type(outcome.error) is error and says in str(outcome.error)
    if answer == "ratelimited":
        assert isinstance(outcome.error, RetryableError) and outcome.error.retry_after == 1.0


def test_accepted_message_reports_its_ts_and_refused_tokens_say_what_to_fix(stack: Isolated,
                                                                           slack: SlackPeer) -> None:
    user, target = uid(), slack_id("U")
    [device] = register(user, target)
    d = Delivery(user, Notification(**note()), device)
    [ok] = SlackChannel().send([d])
    assert ok.ok and ok.detail is not None and float(ok.detail["ts"]) > 0 and ok.detail["channel"] == target
    slack.revoke()
    try:
        [revoked] = SlackChannel().send([d])
    finally:
        slack.revoke(False)
    [wrong] = SlackChannel(Settings(slack_bot_token="xoxb-not-the-one")).send([d])
    [unset] = SlackChannel(Settings(slack_bot_token="")).send([d])
    [down] = SlackChannel(Settings(slack_base_url="http://127.0.0.1:9")).send([d])
    for outcome, code in ((revoked, "token_revoked"), (wrong, "invalid_auth"), (unset, "not configured")):
        assert type(outcome.error) is PermanentError and code in str(outcome.error)
        assert "NOTIFIER_SLACK_BOT_TOKEN" in str(outcome.error)
    assert type(down.error) is RetryableError and "unreachable" in str(down.error)
    assert len(slack.to(target)) == 1


def test_rate_limited_message_arrives_once_after_retry_after(worker: Worker, slack: SlackPeer) -> None:
    user, target = uid(), slack_id("U")
    register(user, target)
    slack.fail(target, "ratelimited_long")
    send_notification.delay(user, note())
    wait_for(lambda: slack.to(target), timeout=15, message="message after the rate limit")
    first, second = slack.attempts(target)
    assert second - first >= 2.9, "the retry came before Slack's Retry-After (3 s)"
    wait_idle(worker)
    assert len(slack.to(target)) == 1 and dead_letters_naming(user) == []


def test_gone_channel_is_pruned_and_not_tried_again(worker: Worker, slack: SlackPeer) -> None:
    user, kept, gone = uid(), slack_id("U"), slack_id("C")
    ids = register(user, kept, gone)
    slack.refuse(gone, "channel_not_found")
    send_notification.delay(user, note())
    wait_for(lambda: [d.id for d in Devices().list(user)] == ids[:1], message="the gone channel pruned")
    second = send_notification.delay(user, note(title="Second"))
    wait_for(lambda: len(slack.to(kept)) == 2, message="the second message to the kept member")
    wait_idle(worker, second.id)
    assert len(slack.attempts(gone)) == 1 and dead_letters_naming(user) == []


def test_revoked_token_dead_letters_with_the_fix_and_keeps_the_target(worker: Worker, slack: SlackPeer) -> None:
    user, target = uid(), slack_id("U")
    register(user, target)
    slack.revoke()
    try:
        send_notification.delay(user, note())
        [entry] = wait_for(lambda: dead_letters_naming(user), message="dead letter")
    finally:
        slack.revoke(False)
    assert entry["error_type"] == "PermanentError" and "token_revoked" in entry["error"]
    assert "NOTIFIER_SLACK_BOT_TOKEN" in entry["error"]
    assert len(Devices().list(user)) == 1 and slack.to(target) == []


def test_redelivered_task_does_not_post_twice(worker: Worker, slack: SlackPeer) -> None:
    user, target = uid(), slack_id("U")
    register(user, target)
    n = Notification(**note()).to_dict()
    app = producer_app()
    first = app.send_task(deliver_task("slack"), args=[{n["id"]: n}, [[user, n["id"], "*"]]], queue="slack")
    assert wait_for(lambda: task_summary(worker, first.id), message="first delivery")["delivered"] == 1
    again = app.send_task(deliver_task("slack"), args=[{n["id"]: n}, [[user, n["id"], "*"]]], queue="slack")
    assert wait_for(lambda: task_summary(worker, again.id), message="redelivery")["already"] == 1
    assert len(slack.to(target)) == 1



def test_quiet_hours_defer_and_a_channel_turned_off_is_not_sent(worker: Worker, slack: SlackPeer) -> None:
    quiet, off, control = uid(), uid(), uid()
    targets = {u: slack_id("U") for u in (quiet, off, control)}
    for u, t in targets.items():
        register(u, t)
    PreferenceStore().set(quiet, {"quiet_hours": quiet_hours_around_now(), "timezone": "UTC"})
    PreferenceStore().set(off, {"channels": {"slack": False}})
    sent = {u: send_notification.delay(u, note()) for u in targets}
    wait_for(lambda: slack.to(targets[control]), message="the control user's message")
    scheduled = wait_for(lambda: [m for m in get_redis().zrange(get_keys().schedule(), 0, -1)
                                  if sent[quiet].id in str(m)], message="the deferred message in the schedule")
    assert scheduled
    wait_idle(worker, *(s.id for s in sent.values()))
    assert slack.to(targets[quiet]) == [] and slack.to(targets[off]) == []


def test_group_channel_gets_one_message_while_members_get_theirs(worker: Worker, slack: SlackPeer) -> None:
    group, members = uid("team"), [uid(), uid()]
    member_ids = {u: slack_id("U") for u in members}
    for u, t in member_ids.items():
        register(u, t)
    Groups().add(group, members)
    room = slack_id("C")
    register(group_recipient(group), room)
    send_to_group(group, note(title="Incident resolved"))
    for t in (*member_ids.values(), room):
        wait_for(lambda t=t: slack.to(t), message=f"message to {t}")
    wait_idle(worker)
    assert [len(slack.to(t)) for t in (*member_ids.values(), room)] == [1, 1, 1]
    assert group_recipient(group) not in get_redis().smembers(get_keys().users())

    broadcast(note(title="To everyone"))
    for t in member_ids.values():
        wait_for(lambda t=t: len(slack.to(t)) == 2, message=f"broadcast to {t}")
    wait_idle(worker)
    assert len(slack.to(room)) == 1, "a broadcast to everyone reached a group's own channel"


def test_group_targets_register_from_the_cli_and_user_ids_cannot_take_the_prefix(stack: Isolated) -> None:
    group, room = uid("team"), slack_id("C")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "notifier.cli", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=False)

    added = cli("devices", "add", "--group", group, "--platform", "slack", "--token", room)
    assert added.returncode == 0, added.stderr
    [device] = Devices().list(group_recipient(group))
    assert device.id == added.stdout.strip() and device.token == room
    assert room in cli("devices", "list", "--group", group).stdout
    both = cli("devices", "add", "alice", "--group", group, "--platform", "slack", "--token", room)
    assert both.returncode == 1 and "either USER_ID or --group" in both.stderr
    assert cli("devices", "remove", device.id, "--group", group).returncode == 0
    assert Devices().list(group_recipient(group)) == []
    with pytest.raises(ValidationError, match="group's own targets"):
        send_notification.delay(f"group:{group}", note())
    taken = cli("devices", "add", f"group:{group}", "--platform", "slack", "--token", room)
    assert taken.returncode == 1 and "--group" in taken.stderr and "Traceback" not in taken.stderr
