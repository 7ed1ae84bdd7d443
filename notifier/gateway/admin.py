"""The admin API and page: the delivery log, the dead letters and the queues, for support staff.

Every ``/v1/admin`` endpoint takes the server API key (``require_service``), never a user token. The
page at ``/admin`` is static: it holds no data and asks for the key, which it sends to these
endpoints as ``X-API-Key``; it reads and acts only through them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from notifier.deliverylog import queries
from notifier.gateway.auth import require_service
from notifier.gateway.errors import RESPONSES, ApiError, ErrorBody
from notifier.state.deadletters import DeadLetters, readable

router = APIRouter(prefix="/v1/admin", responses=RESPONSES, tags=["admin"], dependencies=[Depends(require_service)])

MAX_DEAD_LETTERS = 1000


class LogEvent(BaseModel):
    id: int = Field(description="The event's row id: what pages are cut by")
    kind: str = Field(description="accepted, queued, skipped, held, workflow, sent, retried, failed, replayed, "
                                  "pruned, delivered, seen, read, clicked or deleted")
    at: str
    notification_id: str
    user_id: str
    type: str | None
    channel: str | None
    target: str | None
    detail: dict[str, Any]


class DeliveryState(BaseModel):
    user_id: str
    channel: str
    target: str | None
    state: str = Field(description="The kind of its latest event")
    at: str
    events: list[LogEvent]


class TimelineBody(BaseModel):
    notification_id: str
    deliveries: list[DeliveryState] = Field(description="Per user, channel and target: where it stands")
    events: list[LogEvent] = Field(description="Every event, in the order they were written")


class LogPage(BaseModel):
    events: list[LogEvent]
    next_cursor: int | None = Field(description="Pass as `before` for the next (older) page; null at the end")


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[str, Field(min_length=1, max_length=41)]] = Field(min_length=1, max_length=MAX_DEAD_LETTERS)


class ReplayQueued(BaseModel):
    queued: int = Field(description="Dead letters handed to replay tasks; each leaves the list once re-queued")


class QueueDepths(BaseModel):
    queues: dict[str, int]
    dead_letters: int


def timeline_answer(notification_id: str, user_id: str | None = None) -> dict[str, Any]:
    """The timeline as the API gives it; 404 when the log has nothing of the notification (for the user)."""
    found = queries.timeline(notification_id, user_id)
    if found is None:
        raise ApiError(404, f"the delivery log has no notification {notification_id!r}"
                       + ("" if user_id is None else " of yours")
                       + "; events reach it within seconds of happening")
    return found.to_dict()


@router.get("/notifications/{notification_id}", response_model=TimelineBody, responses={404: {"model": ErrorBody}})
def notification_timeline(notification_id: str,
                          user: Annotated[str | None, Query(max_length=256, description="Only this user's")] = None,
                          ) -> dict[str, Any]:
    """One notification's timeline: per user, channel and target its last state, and every event."""
    return timeline_answer(notification_id, user)


@router.get("/log", response_model=LogPage)
def search_log(
    user: Annotated[str | None, Query(max_length=256)] = None,
    type_: Annotated[str | None, Query(alias="type", max_length=64)] = None,
    channel: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(description="An event kind: sent, failed, skipped, read, ...")] = None,
    since: Annotated[str | None, Query(description="A duration back from now (15m, 1h, 2d) or an ISO 8601 time")
                     ] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 50,
    before: Annotated[int | None, Query(ge=1, description="Cursor: `next_cursor` of the previous page")] = None,
) -> dict[str, Any]:
    """The delivery log, newest first, narrowed by the parameters, a page at a time."""
    filters = queries.Filters(user, type_, channel, status, queries.since(since) if since else None)
    return queries.search(filters, limit, before).to_dict()


@router.get("/dead-letters")
def dead_letters(limit: Annotated[int, Query(ge=1, le=MAX_DEAD_LETTERS)] = 100) -> list[dict[str, Any]]:
    """Deliveries that failed for good, oldest first (as ``notifier dlq list --json`` shows them)."""
    return [readable(e) for e in DeadLetters().list(limit)]


@router.post("/dead-letters/replay", response_model=ReplayQueued, status_code=202)
def replay_dead_letters(body: ReplayRequest) -> ReplayQueued:
    """Send dead letters again through the pipeline (a worker must consume the router queue); an
    unknown id queues nothing."""
    from notifier.pipeline.backlog import replay

    chunks, _ = replay(body.ids)
    return ReplayQueued(queued=sum(len(part) for part in chunks))


@router.get("/queues", response_model=QueueDepths)
def queues() -> QueueDepths:
    """Messages ready per queue, and the dead letters waiting."""
    from notifier.pipeline.backlog import queue_depths

    return QueueDepths(queues=queue_depths(), dead_letters=DeadLetters().size())

