"""``/v1/admin/webhooks``: the delivery log's event webhook subscriptions, for services (API key).

The same :class:`notifier.deliverylog.subscriptions.Subscriptions` the CLI uses; a new subscription's
answer carries its signing secret, listing never does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from notifier.deliverylog.subscriptions import Subscriptions
from notifier.gateway.api import JSON
from notifier.gateway.auth import require_service
from notifier.gateway.errors import RESPONSES, ErrorBody

router = APIRouter(prefix="/v1/admin/webhooks", tags=["admin"], responses=RESPONSES,
                   dependencies=[Depends(require_service)])

SubscriptionId = Annotated[str, Path(max_length=64, description="The subscription id (`wh_...`)")]


class NewWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000, description="https URL (http only to a loopback host)")
    events: list[str] = Field(min_length=1, max_length=64,
                              description='event kinds: ["sent", "failed", "read"], or ["*"] for every kind')


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    state: str = Field(description="`active`, or `disabled` (with `disabled_at` and `disabled_reason`)")
    created_at: str
    failing_since: str | None = Field(description="when its endpoint began failing; null while it works")
    disabled_at: str | None = None
    disabled_reason: str | None = None
    secret: str | None = Field(None, description="the Standard Webhooks signing secret: only when just added")


class WebhookList(BaseModel):
    webhooks: list[Webhook]


_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such subscription"}}


@router.post("", response_model=Webhook, status_code=201)
def add_webhook(body: NewWebhook) -> Response:
    """Subscribe a URL to event kinds; the answer's ``secret`` is the only time it is shown."""
    return JSON(Subscriptions().add(body.url, body.events).to_dict(with_secret=True), status_code=201)


@router.get("", response_model=WebhookList)
def list_webhooks() -> Response:
    return JSON({"webhooks": [s.to_dict() for s in Subscriptions().list()]})


@router.delete("/{subscription_id}", status_code=204, responses=_UNKNOWN)
def remove_webhook(subscription_id: SubscriptionId) -> Response:
    Subscriptions().remove(subscription_id)
    return Response(status_code=204)


@router.post("/{subscription_id}/enable", response_model=Webhook, responses=_UNKNOWN)
def enable_webhook(subscription_id: SubscriptionId) -> Response:
    """Turn a disabled subscription on again, its failures forgotten."""
    return JSON(Subscriptions().enable(subscription_id).to_dict())
