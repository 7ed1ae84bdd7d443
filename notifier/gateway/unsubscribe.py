"""The link in every email's ``List-Unsubscribe``: one type's email off, without logging in.

``POST /v1/unsubscribe/<token>`` is RFC 8058's one-click unsubscribe: the mail provider posts
``List-Unsubscribe=One-Click`` (form-encoded, no cookies, no credentials) and the type named in the
signed token gets its channel turned off in the user's preferences (``type_channels``). Doing it
again changes nothing and answers the same. ``GET`` only shows a page with a button that makes that
POST: mail scanners and link previews follow links, and a GET that unsubscribed would unsubscribe
people who never clicked.

The token is the only credential (``notifier.tokens.issue_unsubscribe``): it names the user, type
and channel, is signed with ``NOTIFIER_SECRET_KEY`` for its own audience and does not expire. A bad
one gets :class:`~notifier.errors.InvalidLink` (400).
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from notifier import tokens
from notifier.errors import InvalidLink, ValidationError
from notifier.gateway.errors import ErrorBody
from notifier.gateway.state import State
from notifier.models import check_channel
from notifier.tokens import Unsubscribe

router = APIRouter(prefix="/v1", tags=["email"], responses={400: {"model": ErrorBody}})

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
    "Cache-Control": "no-store",
}
"""The page's URL holds the token: never send it on in a Referer, never cache or frame the page."""


class Unsubscribed(BaseModel):
    unsubscribed: bool = Field(description="Always true: the type's email is off (it may have been already)")
    type: str = Field(description="The notification type whose email is now off")
    channel: str


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def confirm_page(token: str) -> HTMLResponse:
    """A page asking to confirm; changes nothing (mail scanners open links)."""
    link = _link(token)
    return _page("Unsubscribe?", f"Stop receiving {_what(link)}?",
                 '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
                 '<button type="submit">Unsubscribe</button></form>')


@router.post("/unsubscribe/{token}", response_model=Unsubscribed)
def unsubscribe(token: str, request: Request, state: State) -> Response:
    """RFC 8058 one-click unsubscribe: the token's type stops being sent on its channel (idempotent).

    Answers a page to a browser (``Accept: text/html``), JSON to anything else.
    """
    link = _link(token)
    state.preferences.update(link.user_id, type_channels={link.type: {link.channel: False}})
    if "text/html" in request.headers.get("accept", ""):
        return _page("Unsubscribed", f"You will no longer receive {_what(link)}.",
                     "<p>You can turn them on again in the app's notification settings.</p>")
    return JSONResponse(Unsubscribed(unsubscribed=True, type=link.type, channel=link.channel).model_dump())


def _link(token: str) -> Unsubscribe:
    link = tokens.verify_unsubscribe(token)
    try:
        check_channel(link.channel)
    except ValidationError:
        raise InvalidLink(f"this unsubscribe link names a channel this server does not have ({link.channel!r})") \
            from None
    return link


def _what(link: Unsubscribe) -> str:
    return f"“{html.escape(link.type)}” notifications by {html.escape(link.channel)}"


def _page(title: str, question: str, rest: str) -> HTMLResponse:
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
            f"<body><h1>{title}</h1><p>{question}</p>{rest}</body></html>")
    return HTMLResponse(body, headers=PAGE_HEADERS)
