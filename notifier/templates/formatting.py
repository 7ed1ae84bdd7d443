"""The templates' filters: dates, numbers and relative times in the user's locale and time zone (Babel).

Each filter reads the locale and time zone of the render from the template context (``locale``,
``timezone``), so one compiled template serves every user. Dates in ``data`` arrive as JSON, so a
filter takes an ISO 8601 string as well as a datetime; a naive time is taken as UTC.
"""

from __future__ import annotations

import datetime as dt
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
    return parse_locale(str(context.get("locale") or "en"))


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
