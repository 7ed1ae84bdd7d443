"""The error catalogue (``notifier/errors.py``) is complete, and the gateway answers each error from it.

Every subclass of ``NotifierError`` is found by importing all of notifier's modules and walking the
class tree, so an error defined anywhere is checked. Each must carry a status, a code and a
what-to-do sentence, and a real FastAPI app with the gateway's handlers installed
(``notifier.gateway.errors.install``) must answer it, over HTTP (httpx on the ASGI app), with that status, code, the JSON
shape ``{"error", "message"}`` and its headers.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import pkgutil
import re
from collections.abc import Mapping

import httpx
import pytest
import redis
from fastapi import FastAPI

import notifier
from notifier.errors import (
    ClientGone,
    DeliveryError,
    NotifierError,
    RateLimited,
    StoreUnavailable,
    Unauthorized,
    catalogue,
    markdown_table,
)
from notifier.gateway.errors import install
from tests.support.helpers import ROOT

INTERNAL: set[type[NotifierError]] = {ClientGone, *(cls for cls in catalogue() if issubclass(cls, DeliveryError))}
"""Errors that never become an HTTP answer (see notifier.errors' docstring); any other needs a status."""
SECRET = "redis://admin:hunter2@10.0.0.9:6379/0"


def _import_everything() -> list[type[NotifierError]]:
    for module in pkgutil.walk_packages(notifier.__path__, "notifier."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    return catalogue()


ERRORS = _import_everything()


def _make(cls: type[NotifierError]) -> NotifierError:
    text = f"{cls.__name__} happened at {SECRET}; do what the advice says"
    return cls(text, 7) if issubclass(cls, RateLimited) else cls(text)


def _answers(raised: Mapping[str, BaseException]) -> dict[str, httpx.Response]:
    """A tiny app with the gateway's error handlers, asked over HTTP once per error: each raises one."""
    app = FastAPI()
    install(app)

    @app.get("/raise/{name}")
    async def raise_it(name: str) -> None:
        raise raised[name]

    async def ask() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return {name: await client.get(f"/raise/{name}") for name in raised}

    return asyncio.run(ask())


def test_the_walk_finds_the_errors_defined_outside_errors_py_too() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {"BrokerUnavailable", "HubUnavailable", "TooManyConnections", "InvalidToken", "SlowConsumer",
            "TokenExpired", "ConfigError", "ValidationError", "RetryableError", "InvalidTarget"} <= names
    assert len(names) == len(ERRORS), "two error classes share a name"


@pytest.mark.parametrize("cls", ERRORS[1:], ids=lambda cls: cls.__name__)
def test_each_error_has_a_status_a_code_and_advice_in_its_own_body(cls: type[NotifierError]) -> None:
    for name in ("status", "code", "advice"):
        assert name in cls.__dict__, f"{cls.__name__} inherits {name} instead of saying it"
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", cls.code), cls.code
    assert len(cls.advice.split()) >= 4 and "\n" not in cls.advice, cls.advice
    if cls in INTERNAL:
        assert cls.status is None and cls.close_code is None
    else:
        assert isinstance(cls.status, int) and 400 <= cls.status <= 599, cls.status


def test_the_gateway_answers_every_error_with_its_status_code_and_headers() -> None:
    answered = [cls for cls in ERRORS[1:] if cls not in INTERNAL]
    raised = {cls.__name__: _make(cls) for cls in answered}
    responses = _answers(raised)
    for cls in answered:
        exc, response = raised[cls.__name__], responses[cls.__name__]
        assert response.status_code == cls.status, cls.__name__
        assert response.json() == {"error": cls.code, "message": exc.public_message}, cls.__name__
        if exc.retry_seconds is not None:
            assert response.headers["retry-after"] == str(exc.retry_seconds), cls.__name__
        if issubclass(cls, Unauthorized):
            assert response.headers["www-authenticate"].startswith("Bearer"), cls.__name__
        if cls.expose:
            assert response.json()["message"] == str(exc)
        else:  # the text names a server: only the advice reaches the caller
            assert response.json()["message"] == cls.advice and "hunter2" not in response.text


def test_internal_errors_are_a_500_and_redis_failures_the_stores_503() -> None:
    raised: dict[str, BaseException] = {cls.__name__: _make(cls) for cls in INTERNAL}
    raised["redis"] = redis.exceptions.ConnectionError(f"Error 111 connecting to {SECRET}")
    responses = _answers(raised)
    for cls in INTERNAL:
        assert responses[cls.__name__].status_code == 500, cls.__name__
    down = responses["redis"]
    assert down.status_code == StoreUnavailable.status
    assert down.json() == {"error": StoreUnavailable.code, "message": StoreUnavailable.advice}
    assert down.headers["retry-after"] == str(StoreUnavailable.retry_seconds)


def test_an_error_without_its_answer_cannot_be_defined() -> None:
    with pytest.raises(TypeError, match="Forgotten must set code, advice") as refused:
        type("Forgotten", (NotifierError,), {"status": 409})
    del refused  # its traceback holds the half-made class; once gone, the class tree forgets it
    gc.collect()
    assert "Forgotten" not in {cls.__name__ for cls in catalogue()}


def test_the_readme_errors_table_is_the_catalogues() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's Errors table is stale: paste notifier.errors.markdown_table()"
