"""Teams and Discord end to end: a registered incoming-webhook URL -> router -> the channel's task ->
the webhook peer (``tests/peers/teams.py``, ``tests/peers/discord.py``), through one real worker;
and the pure card and message mappings."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from notifier import send_notification, send_to_group
from notifier.channels.base import Delivery
from notifier.channels.discord import DiscordChannel
from notifier.channels.teams import CARD, TeamsChannel
from notifier.config import Settings
from notifier.errors import InvalidTarget, PermanentError, RetryableError
from notifier.models import Notification
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import deliver_task
from notifier.redis.store import get_keys, get_redis
from notifier.state.devices import Devices, Registration
from notifier.state.groups import Groups, group_recipient
from notifier.state.preferences import PreferenceStore
from notifier.templates import Rendered
from tests.peers.broker import Isolated, isolated, task_summary
from tests.peers.discord import DiscordPeer
from tests.peers.teams import TeamsPeer
from tests.support.gateway_support import API_KEY, Gateway, token
from tests.support.helpers import Worker, dead_letters_naming, quiet_hours_around_now, uid, wait_for, wait_idle


@pytest.fixture(scope="module")
def teams() -> Iterator[TeamsPeer]:
    peer = TeamsPeer().start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def discord() -> Iterator[DiscordPeer]:
    peer = DiscordPeer().start()
    yield peer
    peer.stop()


PEERS_ON_LOOPBACK = {"NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true"}
"""The peers listen on 127.0.0.1, which user-registered webhook URLs may not reach by default."""


@pytest.fixture(scope="module")
def stack() -> Iterator[Isolated]:
    yield from isolated(PEERS_ON_LOOPBACK)


@pytest.fixture(scope="module")
def worker(stack: Isolated) -> Worker:
    return stack.worker({**PEERS_ON_LOOPBACK, "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "3"}, "router,teams,discord")


def register(recipient: str, platform: str, *urls: str) -> list[str]:
    return [Devices().register(recipient, {"platform": platform, "url": u}).id for u in urls]


def note(*channels: str, **extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped",
            "channels": list(channels), **extra}



def delivery(**fields: object) -> Delivery:
    return Delivery("alice", Notification(**note("teams", **fields)), "teams-x")


# Pure mappings ----------------------------------------------------------------------------------------
def test_teams_card_has_the_text_and_an_open_button() -> None:
    payload = TeamsChannel(Settings()).build_payload(delivery(action_url="https://shop.test/orders/1"))
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == CARD
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert [(b["type"], b["text"]) for b in card["body"]] == [("TextBlock", "Order Shipped"),
                                                              ("TextBlock", "Your order #12345 has shipped")]
    assert card["body"][0]["weight"] == "Bolder" and all(b["wrap"] for b in card["body"])
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open", "url": "https://shop.test/orders/1"}]
    assert "actions" not in TeamsChannel(Settings()).build_payload(delivery())["attachments"][0]["content"]
    rendered = Delivery("alice", Notification(**note("teams")), "teams-x", Rendered(title="Versandt", body="Bald"))
    assert [b["text"] for b in TeamsChannel(Settings()).build_payload(rendered)["attachments"][0]["content"]["body"]
            ] == ["Versandt", "Bald"]


def test_discord_message_pings_nobody_and_links_the_title() -> None:
    d = Delivery("alice", Notification(**note("discord", title="@everyone deploy", body="<@123> and @here look",
                                               action_url="https://shop.test/orders/1")), "discord-x")
    payload = DiscordChannel(Settings()).build_payload(d)
    assert payload["allowed_mentions"] == {"parse": []}
    assert payload["content"] == "@everyone deploy"
    assert payload["embeds"] == [{"title": "@everyone deploy", "description": "<@123> and @here look",
                                  "url": "https://shop.test/orders/1"}]
    long = Delivery("alice", Notification(**note("discord", title="T" * 256, body="b" * 4096)), "discord-x")
    embed = DiscordChannel(Settings()).build_payload(long)["embeds"][0]
    assert len(embed["title"]) <= 256 and len(embed["description"]) <= 4096 and "url" not in embed


def test_webhook_urls_are_https_to_public_hosts_unless_private_ones_are_allowed(
        settings_env: Callable[[dict[str, str]], None]) -> None:
    settings_env({"NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "false"})
    for platform, url, says in (("teams", "http://127.0.0.1:8080/workflows/x", "this machine|not a public"),
                                ("teams", "https://169.254.169.254/latest/meta-data", "not a public address"),
                                ("teams", "https://10.0.0.7/workflows/x", "not a public address"),
                                ("discord", "http://localhost:9/api/webhooks/1/x", "this machine")):
        with pytest.raises(ValueError, match=says):
            Registration(platform=platform, url=url)
    settings_env(PEERS_ON_LOOPBACK)
    for platform, url in (("teams", "https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d"),
                          ("teams", "https://prod-01.westus.logic.azure.com:443/workflows/x/triggers/manual/paths/"
                                    "invoke?sig=y"),
                          ("teams", "http://127.0.0.1:8080/workflows/x"),
                          ("discord", "https://discord.com/api/webhooks/123/abc"),
                          ("discord", "https://canary.discord.com/api/webhooks/123/abc"),
                          ("discord", "http://localhost:9/api/webhooks/1/x")):
        assert Registration(platform=platform, url=url).url == url
    for platform, url, says in (("teams", "http://contoso.webhook.office.com/webhookb2/x", "https"),
                                ("teams", "ftp://127.0.0.1/x", "https"),
                                ("discord", "https://discord.com.evil.test/api/webhooks/1/x", "discord.com"),
                                ("discord", "https://discord.com/channels/1/2", "/api/webhooks/"),
                                ("discord", "https://user:pw@discord.com/api/webhooks/1/x", "no user")):
        with pytest.raises(ValueError, match=says):
            Registration(platform=platform, url=url)
    with pytest.raises(ValueError, match="needs a url"):
        Registration(platform="teams", token="C0123ABCD")


# Teams through the worker ---------------------------------------------------------------------------
def test_teams_workflows_and_legacy_webhooks_get_the_card(worker: Worker, teams: TeamsPeer) -> None:
    user, workflows, legacy = uid(), teams.webhook(), teams.webhook(legacy=True)
    register(user, "teams", workflows, legacy)
    sent = send_notification.delay(user, note("teams", action_url="https://shop.test/orders/1"))
    for url in (workflows, legacy):
        [got] = wait_for(lambda u=url: teams.to_url(u), message=f"card at {url}")
        card = got.body["attachments"][0]["content"]
        assert card["body"][0]["text"] == "Order Shipped" and card["actions"][0]["url"] == "https://shop.test/orders/1"
    wait_idle(worker, sent.id)
    assert teams.state.problems == [] and dead_letters_naming(user) == []


@pytest.mark.parametrize(("answer", "error", "says"), [
    ("throttled", RetryableError, "429"),
    ("legacy_throttled", RetryableError, "HTTP error 429"),
    ("unavailable", RetryableError, "503"),
    ("bad_payload", PermanentError, "rejected"),
    ("deleted", InvalidTarget, "deleted"),
])
def test_each_teams_answer_maps_to_its_error(stack: Isolated, teams: TeamsPeer, answer: str,
                                             error: type[Exception], says: str) -> None:
    user, url = uid(), teams.webhook(legacy=answer == "legacy_throttled")
    [device] = register(user, "teams", url)
    teams.fail_url(url, answer)
    [outcome] = TeamsChannel().send([Delivery(user, Notification(**note("teams")), device)])
    assert type(outcome.error) is error and says in str(outcome.error)
    assert "/workflows/" not in str(outcome.error) and "/webhookb2/" not in str(outcome.error)
    if answer == "throttled":
        assert isinstance(outcome.error, RetryableError) and outcome.error.retry_after == 1.0


def test_teams_throttled_card_arrives_once_after_retry_after(worker: Worker, teams: TeamsPeer) -> None:
    user, url = uid(), teams.webhook()
    register(user, "teams", url)
    teams.fail_url(url, "throttled_long")
    sent = send_notification.delay(user, note("teams"))
    wait_for(lambda: teams.to_url(url), timeout=15, message="card after the throttle")
    first, second = teams.attempts_at(url)
    assert second - first >= 2.9, "the retry came before Teams' Retry-After (3 s)"
    wait_idle(worker, sent.id)
    assert len(teams.to_url(url)) == 1


def test_deleted_teams_webhook_is_pruned_and_not_tried_again(worker: Worker, teams: TeamsPeer) -> None:
    user, kept, gone = uid(), teams.webhook(), teams.webhook()
    ids = register(user, "teams", kept, gone)
    teams.refuse_url(gone, "deleted")
    send_notification.delay(user, note("teams"))
    wait_for(lambda: [d.id for d in Devices().list(user)] == [i for i in ids if i != ids[1]],
             message="the deleted webhook pruned")
    second = send_notification.delay(user, note("teams", title="Second"))
    wait_for(lambda: len(teams.to_url(kept)) == 2, message="the second card")
    wait_idle(worker, second.id)
    assert len(teams.attempts_at(gone)) == 1 and dead_letters_naming(user) == []


# Discord through the worker --------------------------------------------------------------------------
def test_discord_webhook_gets_the_message_without_pings(worker: Worker, discord: DiscordPeer) -> None:
    user, (url, hook) = uid(), discord.webhook()
    register(user, "discord", url)
    sent = send_notification.delay(user, note("discord", body="@everyone it shipped",
                                              action_url="https://shop.test/orders/1"))
    [got] = wait_for(lambda: discord.to(hook), message="discord message")
    assert "wait=true" in got.path
    assert got.body["allowed_mentions"] == {"parse": []} and got.body["content"] == "Order Shipped"
    assert got.body["embeds"][0]["url"] == "https://shop.test/orders/1"
    wait_idle(worker, sent.id)
    assert discord.state.problems == []


@pytest.mark.parametrize(("answer", "error", "says"), [
    ("ratelimited", RetryableError, "rate limited"),
    ("unavailable", RetryableError, "502"),
    ("invalid_form", PermanentError, "Invalid Form Body"),
    ("unknown_webhook", InvalidTarget, "Unknown Webhook"),
])
def test_each_discord_answer_maps_to_its_error(stack: Isolated, discord: DiscordPeer, answer: str,
                                               error: type[Exception], says: str) -> None:
    user, (url, hook) = uid(), discord.webhook()
    [device] = register(user, "discord", url)
    discord.fail(hook, answer)
    [outcome] = DiscordChannel().send([Delivery(user, Notification(**note("discord")), device)])
    assert type(outcome.error) is error and says in str(outcome.error)
    assert discord.tokens[hook] not in str(outcome.error), "an error message gave away the webhook's token"
    if answer == "ratelimited":
        assert isinstance(outcome.error, RetryableError) and outcome.error.retry_after == 1.2


def test_discord_message_id_and_a_wrong_token_or_deleted_webhook(stack: Isolated, discord: DiscordPeer) -> None:
    user, (url, hook) = uid(), discord.webhook()
    [device] = register(user, "discord", url)
    d = Delivery(user, Notification(**note("discord")), device)
    [ok] = DiscordChannel().send([d])
    assert ok.ok and ok.detail is not None and ok.detail["id"].isdigit() and len(discord.to(hook)) == 1
    wrong, (other, _) = uid(), discord.webhook()
    [bad] = register(wrong, "discord", other.rsplit("/", 1)[0] + "/not-the-token")
    [refused] = DiscordChannel().send([Delivery(wrong, Notification(**note("discord")), bad)])
    assert type(refused.error) is InvalidTarget and "Invalid Webhook Token" in str(refused.error)


def test_discord_rate_limit_honours_retry_after_then_prunes_a_deleted_webhook(worker: Worker,
                                                                             discord: DiscordPeer) -> None:
    user, (url, hook) = uid(), discord.webhook()
    [device] = register(user, "discord", url)
    discord.fail(hook, "ratelimited_long")
    first_send = send_notification.delay(user, note("discord"))
    wait_for(lambda: discord.to(hook), timeout=15, message="message after the rate limit")
    first, second = discord.attempts(hook)
    assert second - first >= 2.5, "the retry came before the body's retry_after (2.6 s; the header says 1)"
    wait_idle(worker, first_send.id)
    assert len(discord.to(hook)) == 1

    discord.delete(hook)
    send_notification.delay(user, note("discord", title="After deletion"))
    wait_for(lambda: Devices().get(user, device) is None, message="the deleted webhook pruned")
    third = send_notification.delay(user, note("discord", title="Third"))
    wait_idle(worker, third.id)
    assert len(discord.attempts(hook)) == 2, "a pruned webhook was tried again"
    assert dead_letters_naming(user) == []


def test_redelivered_tasks_do_not_post_twice(worker: Worker, teams: TeamsPeer, discord: DiscordPeer) -> None:
    user, teams_url, (discord_url, hook) = uid(), teams.webhook(), discord.webhook()
    register(user, "teams", teams_url)
    register(user, "discord", discord_url)
    n = Notification(**note("teams", "discord")).to_dict()
    app = producer_app()
    for channel in ("teams", "discord"):
        for expected in ("delivered", "already"):
            task = app.send_task(deliver_task(channel), args=[{n["id"]: n}, [[user, n["id"], "*"]]], queue=channel)
            assert wait_for(lambda t=task: task_summary(worker, t.id), message=f"{channel} {expected}")[expected] == 1
    assert len(teams.to_url(teams_url)) == 1 and len(discord.to(hook)) == 1


def test_quiet_hours_and_turned_off_channels_hold_webhook_posts(worker: Worker, teams: TeamsPeer,
                                                                discord: DiscordPeer) -> None:
    quiet, off, control = uid(), uid(), uid()
    hooks = {u: discord.webhook() for u in (quiet, off, control)}
    cards = {u: teams.webhook() for u in (quiet, off, control)}
    for u in (quiet, off, control):
        register(u, "discord", hooks[u][0])
        register(u, "teams", cards[u])
    PreferenceStore().set(quiet, {"quiet_hours": quiet_hours_around_now(), "timezone": "UTC"})
    PreferenceStore().set(off, {"channels": {"teams": False, "discord": False}})
    sent = {u: send_notification.delay(u, note("teams", "discord")) for u in (quiet, off, control)}
    wait_for(lambda: discord.to(hooks[control][1]) and teams.to_url(cards[control]), message="the control's posts")
    wait_for(lambda: [m for m in get_redis().zrange(get_keys().schedule(), 0, -1) if sent[quiet].id in str(m)],
             message="the deferred posts in the schedule")
    wait_idle(worker, *(s.id for s in sent.values()))
    for u in (quiet, off):
        assert discord.to(hooks[u][1]) == [] and teams.to_url(cards[u]) == []


def test_group_webhooks_registered_over_the_api_get_one_post(stack: Isolated, worker: Worker, teams: TeamsPeer,
                                                            discord: DiscordPeer) -> None:
    group, member = uid("team"), uid()
    member_card = teams.webhook()
    register(member, "teams", member_card)
    Groups().add(group, [member])
    team_card, (team_hook_url, team_hook) = teams.webhook(legacy=True), discord.webhook()
    gateway = Gateway({**stack.env, **PEERS_ON_LOOPBACK}).wait_ready()
    try:
        with httpx.Client(base_url=gateway.url, headers={"X-API-Key": API_KEY}, timeout=10) as api:
            for platform, url in (("teams", team_card), ("discord", team_hook_url)):
                added = api.post(f"/v1/groups/{group}/devices", json={"platform": platform, "url": url})
                assert added.status_code == 201, added.text
            listed = api.get(f"/v1/groups/{group}/devices").json()["devices"]
            assert sorted(d["platform"] for d in listed) == ["discord", "teams"]
            for headers in ({}, {"Authorization": f"Bearer {token(member)}"}):
                refused = httpx.post(f"{gateway.url}/v1/groups/{group}/devices", headers=headers,
                                     json={"platform": "teams", "url": teams.webhook()})
                assert refused.status_code == 401, refused.text
            removed = api.delete(f"/v1/groups/{group}/devices/{listed[0]['id']}")
            assert removed.status_code == 204 and api.delete(f"/v1/groups/{group}/devices/{listed[0]['id']}"
                                                             ).status_code == 404
            assert api.post(f"/v1/groups/{group}/devices",
                            json={"platform": listed[0]["platform"], "url": listed[0]["url"]}).status_code == 201
    finally:
        gateway.stop()
    assert sorted(d.platform for d in Devices().list(group_recipient(group))) == ["discord", "teams"]
    send_to_group(group, note("teams", "discord"))
    for got in (lambda: teams.to_url(member_card), lambda: teams.to_url(team_card), lambda: discord.to(team_hook)):
        wait_for(got, message="a post to the group or its member")
    wait_idle(worker)
    assert len(teams.to_url(member_card)) == len(teams.to_url(team_card)) == len(discord.to(team_hook)) == 1
    assert [d.platform for d in Devices().list(member)] == ["teams"]
