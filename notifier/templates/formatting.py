"""The templates' filters: dates, numbers and relative times in the user's locale and time zone (Babel).

Each filter reads the locale and time zone of the render from the template context (``locale``,
``timezone``), so one compiled template serves every user. Dates in ``data`` arrive as JSON, so a
filter takes an ISO 8601 string as well as a datetime; a naive time is taken as UTC.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from babel import dates, numbers
from jinja2 import pass_context
from jinja2.runtime import Context

from notifier.templates.locales import parse_locale


def _when(value: Any) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time (e.g. 2026-12-01T09:00:00Z)") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{value!r} is not a time: pass an ISO 8601 string, a datetime or epoch seconds")
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _number(value: Any) -> int | float | Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise ValueError(f"{value!r} is not a number")
    return Decimal(value) if isinstance(value, str) else value


def _zone(context: Context) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(str(context.get("timezone") or "UTC"))


def _locale(context: Context) -> Any:
    return _babel_locale(str(context.get("locale") or "en"))


@functools.lru_cache(maxsize=512)
def _babel_locale(tag: str) -> Any:
    return parse_locale(tag)


_PROBES = (0, 7, 999, 1000, 1234, -1234, 12345, 123456, 1234567, -98765432109)


@functools.lru_cache(maxsize=512)
def _integer_signs(tag: str) -> tuple[str, str] | None:
    """The group and minus signs when this locale writes integers as Python's ``{:,}`` groups them
    (threes, from the first thousand, Latin digits), checked against Babel itself on probes; None
    where it does not (Indian grouping, other digits): there Babel formats every number. Babel's
    ``format_decimal`` takes ~11 µs per integer, a third of a short template's rendering
    (``benchmarks/template_sends.py``); this takes ~1."""
    locale = _babel_locale(tag)
    group, minus = numbers.get_group_symbol(locale), numbers.get_minus_sign_symbol(locale)
    for probe in _PROBES:
        if numbers.format_decimal(probe, locale=locale) != _grouped(probe, group, minus):
            return None
    return group, minus


def _grouped(value: int, group: str, minus: str) -> str:
    return f"{value:,}".replace(",", "\0").replace("-", minus).replace("\0", group)


@pass_context
def format_datetime(context: Context, value: Any, format: str = "medium") -> str:
    """``{{ data.due | datetime }}``, ``| datetime("short")``: date and time in the user's zone."""
    return dates.format_datetime(_when(value), format, tzinfo=_zone(context), locale=_locale(context))


@pass_context
def format_date(context: Context, value: Any, format: str = "medium") -> str:
    """``{{ data.due | date }}``: the date in the user's zone (``full``, ``long``, ``medium``, ``short``)."""
    return dates.format_date(_when(value).astimezone(_zone(context)).date(), format, locale=_locale(context))


@pass_context
def format_time(context: Context, value: Any, format: str = "short") -> str:
    """``{{ data.due | time }}``: the time of day in the user's zone."""
    return dates.format_time(_when(value), format, tzinfo=_zone(context), locale=_locale(context))


@pass_context
def relative(context: Context, value: Any) -> str:
    """``{{ data.posted_at | relative }}``: "5 minutes ago", "in 2 days" (against the render's ``now``)."""
    now = context.get("now")
    delta = _when(value) - (now if isinstance(now, dt.datetime) else dt.datetime.now(dt.UTC))
    return dates.format_timedelta(delta, add_direction=True, locale=_locale(context))


@pass_context
def format_number(context: Context, value: Any) -> str:
    """``{{ data.amount | number }}``: grouping and decimal signs of the user's locale."""
    if type(value) is int:
        signs = _integer_signs(str(context.get("locale") or "en"))
        if signs is not None:
            return _grouped(value, *signs)
    return numbers.format_decimal(_number(value), locale=_locale(context))


@pass_context
def format_percent(context: Context, value: Any) -> str:
    """``{{ 0.25 | percent }}`` -> "25 %" in German."""
    return numbers.format_percent(_number(value), locale=_locale(context))


@pass_context
def format_currency(context: Context, value: Any, currency: str) -> str:
    """``{{ data.total | currency("EUR") }}``."""
    return numbers.format_currency(_number(value), currency, locale=_locale(context))


FILTERS: dict[str, Callable[..., str]] = {
    "datetime": format_datetime, "date": format_date, "time": format_time, "relative": relative,
    "number": format_number, "percent": format_percent, "currency": format_currency,
}
"""The filters every template environment has (README lists them)."""
