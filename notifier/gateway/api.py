"""The HTTP API: a user's inbox and preferences (user token), and sending for services (API key).

Handlers are thin: they take the user from the token, never from the request, and call the same
library classes the workers use (``Inbox``, ``PreferenceStore``, ``send_notification``), which run
in the thread pool because they are synchronous.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from notifier.deliverylog import emission
from notifier.errors import PermanentError, TemplateRenderError, ValidationError
from notifier.gateway.admin import TimelineBody, timeline_answer
from notifier.gateway.auth import UserId, current_user, require_service
from notifier.gateway.errors import RESPONSES, ApiError, ErrorBody
from notifier.gateway.state import State
from notifier.models import CANCEL_KEY, Notification, Preferences, parse_json, validate
from notifier.pipeline.producer import cancel, send_bulk, send_notification
from notifier.state.devices import Device, Devices, Registration
from notifier.state.groups import group_recipient
from notifier.state.inbox import MAX_IDS, MAX_PAGE, Changed, Inbox
from notifier.templates import get_renderer
from notifier.textlimits import SmsLength, sms_length

router = APIRouter(prefix="/v1", responses=RESPONSES)

NotificationId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The notification id")]
MAX_BULK = 1000


class JSON(Response):
    """orjson-encoded JSON: the inbox items are passed through as stored, not re-validated."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# Models (request bodies, and the response shapes shown in the OpenAPI schema) ---------------------
class InboxItem(Notification):
    """A notification as it sits in the inbox."""

    model_config = ConfigDict(extra="allow", frozen=True)
    entry_id: str = Field(description="Inbox entry id: the cursor, and the id to resume a stream from")
    read: bool
    seen: bool = Field(description="The feed showed it (an archived one counts as seen)")
    archived: bool
    snoozed_until: float | None = Field(description="When a snoozed one comes back (epoch s); null if not snoozed")
    interacted: bool = Field(description="The user took one of its actions")


class InboxPage(BaseModel):
    items: list[InboxItem]
    next_cursor: str | None = Field(description="Pass as `before` for the next (older) page; null at the end")


class UnreadCount(BaseModel):
    unread: int


class Counts(BaseModel):
    total: int = Field(description="Notifications in the default list (archived and snoozed ones are not)")
    unread: int
    unseen: int
    archived: int
    snoozed: int


class StateAnswer(Counts):
    """What a state change did, and the counts afterwards."""

    marked: int = Field(description="Notifications whose state changed (ones already in it are not counted)")
    unknown: list[str] = Field(description="The ids sent that name no notification in your inbox")


def state_answer(changed: Changed) -> dict[str, Any]:
    return {"marked": changed.marked, "unknown": changed.unknown, **asdict(changed.counts)}


class MarkRead(BaseModel):
    """Either ``ids`` (notification ids or inbox entry ids, mixed as you like) or ``all: true``.

    Also the WebSocket's ``read`` frame (:class:`notifier.gateway.ws.Read` adds its ``type`` and
    ``ref``), so both ways of marking read accept and refuse the same.
    """

    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, max_length=MAX_IDS, description="Notification ids (`id`) or inbox entry ids (`entry_id`, the "
                                              "SSE `id:`, the WebSocket frame's `id`)")
    all: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> MarkRead:
        if self.all == (self.ids is not None):
            raise ValueError('send either "ids": [...] or "all": true')
        return self


class MarkedRead(BaseModel):
    marked: int = Field(description="Notifications that became read (already read ones are not counted)")
    unknown: list[str] = Field(description="The ids sent that name no notification in your inbox")
    unread: int


class MarkState(MarkRead):
    """Either ``ids`` (notification ids or inbox entry ids) or ``all: true``: the body of every state
    change (seen, archive, unarchive, unsnooze) and of the WebSocket frames of the same name."""

    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, min_length=1, max_length=MAX_IDS, description="Notification ids (`id`) or inbox entry ids (`entry_id`)")


class Snooze(BaseModel):
    """Hide ``ids`` until ``until``; they come back unread, announced live."""

    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_IDS, description="Notification ids (`id`) or inbox entry ids (`entry_id`)")
    until: float = Field(description="When they come back, epoch seconds (in the future, within a year)")


class SeenAnswer(StateAnswer):
    seen: int = Field(description="The ids sent that name a notification of yours (a `seen` event each)")


class Click(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str | None = Field(None, min_length=1, max_length=64,
                               description="Which of its actions was clicked; none for the notification itself")


class Deleted(BaseModel):
    deleted: bool
    unread: int


class NotifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=128)
    notification: Notification
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class NotifyBulk(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[NotifyRequest] = Field(min_length=1, max_length=MAX_BULK)


class Accepted(BaseModel):
    id: str = Field(description="The notification id (the first send's id for a repeated idempotency key)")


class AcceptedBulk(BaseModel):
    ids: list[str]


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cancel_key: str = Field(pattern=CANCEL_KEY, description="the cancel_key the notifications were sent with")


class Cancelled(BaseModel):
    cancelled: int = Field(description="workflow runs stopped (steps already taken stay taken)")


# The inbox ------------------------------------------------------------------------------------
@router.get("/notifications", response_model=InboxPage, tags=["inbox"])
def list_notifications(
    user: UserId, state: State,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    before: Annotated[str | None, Query(max_length=41, description="Cursor: an entry id from `next_cursor`")] = None,
    unread: Annotated[bool, Query(description="Only unread notifications")] = False,
    unseen: Annotated[bool, Query(description="Only unseen notifications")] = False,
    archived: Annotated[bool, Query(description="The archived notifications instead of the others")] = False,
) -> Response:
    """The caller's notifications, newest first, one page at a time; archived and snoozed ones are
    left out unless ``archived=true`` (which lists only those archived). Filters combine with paging."""
    page = state.inbox.list(user, limit=limit, before=before or None, unread_only=unread, unseen_only=unseen,
                            archived=archived)
    return JSON({"items": page.items, "next_cursor": page.next_cursor})


@router.get("/notifications/unread-count", response_model=UnreadCount, tags=["inbox"])
def unread_count(user: UserId, state: State) -> UnreadCount:
    return UnreadCount(unread=state.inbox.unread_count(user))


@router.get("/notifications/counts", response_model=Counts, tags=["inbox"])
def counts(user: UserId, state: State) -> Response:
    """Exact counts: the default list's total, unread, unseen (the bell's badge), archived, snoozed."""
    return JSON(asdict(state.inbox.counts(user)))


@router.post("/notifications/read", response_model=MarkedRead, tags=["inbox"])
def mark_read(user: UserId, state: State, body: MarkRead) -> MarkedRead:
    """Mark some or all notifications read; the user's open connections get the new count live.

    Ids that name nothing in your inbox are listed in ``unknown``, not ignored.
    """
    marked = state.inbox.mark(user, None if body.all else body.ids)
    emission.record(emission.by_user("read", user, marked.read))
    return MarkedRead(marked=marked.marked, unknown=marked.unknown, unread=marked.unread)


@router.post("/notifications/seen", response_model=SeenAnswer, tags=["inbox"])
def mark_seen(user: UserId, state: State, body: MarkState) -> Response:
    """Say that the client showed these notifications (or all): they stop counting as unseen, your
    open connections get a ``state`` event, and each gets a ``seen`` event in the delivery log."""
    return JSON(record_seen(state.inbox, user, None if body.all else body.ids))


def record_seen(inbox: Inbox, user: str, ids: list[str] | None) -> dict[str, Any]:
    """Mark ``ids`` (or all) seen and log a ``seen`` event for each notification named (for all: each
    that became seen); the answer's fields (HTTP and the WebSocket's ``seen`` frame)."""
    changed = inbox.mark_seen(user, ids)
    named = [] if ids is None else [i for i in dict.fromkeys(ids) if i not in changed.unknown]
    shown = changed.changed if ids is None else inbox.present(user, named)[0] if named else []
    emission.record(emission.by_user("seen", user, shown))
    return {**state_answer(changed), "seen": len(shown)}


@router.post("/notifications/archive", response_model=StateAnswer, tags=["inbox"])
def archive(user: UserId, state: State, body: MarkState) -> Response:
    """Archive some or all notifications: out of the default list (listed with ``archived=true``), read."""
    return JSON(state_answer(state.inbox.archive(user, None if body.all else body.ids)))


@router.post("/notifications/unarchive", response_model=StateAnswer, tags=["inbox"])
def unarchive(user: UserId, state: State, body: MarkState) -> Response:
    return JSON(state_answer(state.inbox.unarchive(user, None if body.all else body.ids)))


@router.post("/notifications/snooze", response_model=StateAnswer, tags=["inbox"])
def snooze(user: UserId, state: State, body: Snooze) -> Response:
    """Hide notifications until ``until``; then they come back unread and your connections are told."""
    return JSON(state_answer(state.inbox.snooze(user, body.ids, body.until)))


@router.post("/notifications/unsnooze", response_model=StateAnswer, tags=["inbox"])
def unsnooze(user: UserId, state: State, body: MarkState) -> Response:
    """Bring snoozed notifications (or all) back now, unread."""
    return JSON(state_answer(state.inbox.unsnooze(user, None if body.all else body.ids)))


@router.post("/notifications/{notification_id}/click", status_code=204, tags=["inbox"],
             responses={404: {"model": ErrorBody}})
def click(user: UserId, state: State, notification_id: NotificationId, body: Click | None = None) -> Response:
    """Say that the user clicked the notification (or one of its actions): a ``clicked`` event."""
    known, _ = state.inbox.present(user, [notification_id])
    if not known:
        raise ApiError(404, f"no notification {notification_id!r} in your inbox")
    action = body.action if body is not None else None
    emission.record([e if action is None else replace(e, detail={"action": action})
                     for e in emission.by_user("clicked", user, known)])
    return Response(status_code=204)


@router.get("/notifications/{notification_id}", response_model=InboxItem, tags=["inbox"],
            responses={404: {"model": ErrorBody}})
def get_notification(user: UserId, state: State, notification_id: NotificationId) -> Response:
    item = state.inbox.get(user, notification_id)
    if item is None:
        raise ApiError(404, f"no notification {notification_id!r} in your inbox")
    return JSON(item)


@router.get("/notifications/{notification_id}/status", response_model=TimelineBody, tags=["inbox"],
            responses={404: {"model": ErrorBody}})
def notification_status(user: UserId, notification_id: NotificationId) -> dict[str, Any]:
    """Where one of your notifications stands on each channel and device, from the delivery log (your
    events only, however many users it went to)."""
    return timeline_answer(notification_id, user)


@router.delete("/notifications/{notification_id}", response_model=Deleted, tags=["inbox"],
               responses={404: {"model": ErrorBody}})
def delete_notification(user: UserId, state: State, notification_id: NotificationId) -> Deleted:
    deleted, unread = state.inbox.delete(user, [notification_id])
    if not deleted:
        raise ApiError(404, f"no notification {notification_id!r} in your inbox")
    emission.record(emission.by_user("deleted", user, [notification_id]))
    return Deleted(deleted=True, unread=unread)


# Preferences ----------------------------------------------------------------------------------
@router.get("/preferences", response_model=Preferences, tags=["preferences"])
def get_preferences(user: UserId, state: State) -> Response:
    return JSON(state.preferences.get(user).to_dict())


@router.put("/preferences", response_model=Preferences, tags=["preferences"])
def put_preferences(user: UserId, state: State, body: Preferences) -> Response:
    """Replace the caller's preferences (channels on/off, muted types, quiet hours, email)."""
    return JSON(state.preferences.set(user, body).to_dict())


class ChannelInfo(BaseModel):
    name: str
    devices: bool = Field(description="Whether it sends to registered devices (POST /v1/devices)")
    interruptive: bool = Field(description="Whether it waits for the end of the user's quiet hours")


class ChannelList(BaseModel):
    channels: list[ChannelInfo]


@router.get("/channels", response_model=ChannelList, tags=["preferences"], dependencies=[Depends(current_user)])
def list_channels() -> ChannelList:
    """Every channel this server delivers on (built-in and installed), for a preferences page."""
    from notifier.channels import registry

    return ChannelList(channels=[ChannelInfo(name=name, devices=cls.needs_device, interruptive=cls.interruptive)
                                 for name, cls in registry.classes().items()])


# Devices (push targets) ---------------------------------------------------------------------------
class DeviceList(BaseModel):
    devices: list[Device]


class VapidKey(BaseModel):
    key: str = Field(description="The applicationServerKey to pass to PushManager.subscribe(), base64url")


@router.post("/devices", response_model=Device, status_code=201, tags=["devices"])
def register_device(user: UserId, body: Registration) -> Response:
    """Register the caller's phone (FCM, APNs token), browser (web push subscription) or chat target
    (a Slack member id, a Teams or Discord webhook URL).

    Registering the same token or endpoint again refreshes that device instead of adding one. A webhook's
    answer carries its signing ``secret`` (given, kept from before, or generated); listing never does.
    """
    return JSON(Devices().register(user, body).registered_dict(), status_code=201)


@router.get("/devices", response_model=DeviceList, tags=["devices"])
def list_devices(user: UserId) -> Response:
    return JSON({"devices": [d.to_dict() for d in Devices().list(user)]})


@router.delete("/devices/{device_id}", status_code=204, tags=["devices"],
               responses={404: {"model": ErrorBody}})
def remove_device(user: UserId, device_id: Annotated[str, Path(pattern=r"^[a-z]+-[0-9a-f]{1,64}$")]) -> Response:
    if not Devices().remove(user, device_id):
        raise ApiError(404, f"no device {device_id!r} registered for you")
    return Response(status_code=204)


GroupId = Annotated[str, Path(min_length=1, max_length=128, description="The group id")]


@router.post("/groups/{group_id}/devices", response_model=Device, status_code=201, tags=["devices"],
             dependencies=[Depends(require_service)])
def register_group_device(group_id: GroupId, body: Registration) -> Response:
    """Register a group's own chat target (a Slack channel id, a Teams or Discord webhook URL): a send
    to the group delivers to it once, besides the members (server API key required)."""
    return JSON(Devices().register(group_recipient(group_id), body).registered_dict(), status_code=201)


@router.get("/groups/{group_id}/devices", response_model=DeviceList, tags=["devices"],
            dependencies=[Depends(require_service)])
def list_group_devices(group_id: GroupId) -> Response:
    return JSON({"devices": [d.to_dict() for d in Devices().list(group_recipient(group_id))]})


@router.delete("/groups/{group_id}/devices/{device_id}", status_code=204, tags=["devices"],
               dependencies=[Depends(require_service)], responses={404: {"model": ErrorBody}})
def remove_group_device(group_id: GroupId,
                        device_id: Annotated[str, Path(pattern=r"^[a-z]+-[0-9a-f]{1,64}$")]) -> Response:
    if not Devices().remove(group_recipient(group_id), device_id):
        raise ApiError(404, f"no device {device_id!r} registered for group {group_id!r}")
    return Response(status_code=204)


@router.get("/webpush/vapid-public-key", response_model=VapidKey, tags=["devices"],
            dependencies=[Depends(current_user)],
            responses={404: {"model": ErrorBody, "description": "Web push is not configured"}})
def vapid_public_key(state: State) -> VapidKey:
    """The key browsers subscribe with (``PushManager.subscribe({applicationServerKey})``)."""
    settings = state.settings
    if settings.vapid_public_key:
        return VapidKey(key=settings.vapid_public_key.rstrip("="))
    if settings.vapid_private_key:
        from notifier.channels.webpush import load_vapid, public_key

        try:
            return VapidKey(key=public_key(load_vapid(settings)))
        except PermanentError as exc:
            raise ApiError(404, str(exc), code="not_configured") from None
    raise ApiError(404, "web push is not configured on this server (NOTIFIER_VAPID_PUBLIC_KEY)",
                   code="not_configured")


# Sending, for services that are not Python -------------------------------------------------------
@router.post("/notify", response_model=Accepted, status_code=202, tags=["send"],
             dependencies=[Depends(require_service)])
def notify(body: NotifyRequest) -> Accepted:
    """Send one notification to one user through the pipeline (server API key required)."""
    result = send_notification.delay(body.user_id, body.notification, idempotency_key=body.idempotency_key)
    return Accepted(id=result.id)


@router.post("/notify/bulk", response_model=AcceptedBulk, status_code=202, tags=["send"],
             dependencies=[Depends(require_service)])
def notify_bulk(body: NotifyBulk) -> AcceptedBulk:
    """Send up to 1000 notifications, each to its own user, in router batches."""
    items = [(i.user_id, i.notification, i.idempotency_key) for i in body.items]
    return AcceptedBulk(ids=send_bulk(items))


@router.post("/notify/cancel", response_model=Cancelled, tags=["send"], dependencies=[Depends(require_service)])
def notify_cancel(body: CancelRequest) -> Cancelled:
    """Stop every pending step of the runs sent with ``cancel_key`` (server API key required)."""
    return Cancelled(cancelled=cancel(body.cancel_key))


# Templates, for services that write them -----------------------------------------------------------
class TemplatePreview(BaseModel):
    """What a type's template renders to on one channel, in one locale."""

    title: str
    body: str
    subject: str = Field(description="email only")
    html: str = Field(description="email only: the whole HTML part")
    text: str = Field(description="email and sms: the whole text")
    sms: SmsLength | None = Field(None, description="sms only: the encoding and parts a carrier bills the text at")


@router.get("/templates/{type}/preview", response_model=TemplatePreview, tags=["templates"],
            dependencies=[Depends(require_service)], responses={404: {"model": ErrorBody}})
def preview_template(
    type_: Annotated[str, Path(alias="type", description="The notification type (template name)")],
    channel: Annotated[str, Query(description="a channel, or sms")] = "realtime",
    locale: Annotated[str | None, Query(description="BCP 47 tag (default: NOTIFIER_DEFAULT_LOCALE)")] = None,
    data: Annotated[str | None, Query(description="the notification's data as JSON (default: the "
                                                  "type's example.json)")] = None,
) -> TemplatePreview:
    """Render a type's template with example or given data, as a user of ``locale`` gets it on ``channel``
    (server API key required)."""
    renderer = get_renderer()
    if not renderer.folder.has(type_):
        raise ApiError(404, f"no template {type_!r} in NOTIFIER_TEMPLATES_DIR")
    parsed = parse_json(data, "data") if data is not None else None
    if parsed is not None and not isinstance(parsed, dict):
        raise ValidationError("data must be a JSON object")
    if locale is not None:
        locale = validate(Preferences, {"locale": locale}).locale
    try:
        rendered = renderer.preview(type_, channel, locale, parsed)
    except TemplateRenderError as exc:
        raise ApiError(422, str(exc), code="template_failed") from None
    return TemplatePreview(**asdict(rendered), sms=sms_length(rendered.text) if channel == "sms" else None)
