"""Typed models for what crosses notifier's boundaries: notifications and preferences.

Validation happens here, at the producer, so bad input fails at the ``.delay()`` call site with a
clear message instead of inside a worker.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zoneinfo
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from notifier.errors import ValidationError


def _channel(name: str) -> str:
    try:
        return check_channel(name)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None


def _channel_enum(schema: dict[str, Any]) -> None:
    from notifier.channels import registry

    schema["enum"] = list(registry.names())


ChannelName = Annotated[str, AfterValidator(_channel), Field(json_schema_extra=_channel_enum)]
"""A channel in the registry (``notifier/channels/registry.py``), read when validating, not at import."""
Priority = Literal["normal", "high", "critical"]
M = TypeVar("M", bound=BaseModel)

SLUG = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
CANCEL_KEY = r"^[A-Za-z0-9_.:-]{1,128}$"
"""Notification types. Python's ``$`` also matches before a final newline: use ``re.fullmatch``."""
MAX_USER_ID = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_TITLE = 256
MAX_BODY = 4096
MAX_DATA_BYTES = 4096
"""FCM's data payload limit; larger data would be refused by the push providers anyway."""
MAX_TTL = 28 * 86400
MAX_NAME = 100
"""A display name longer than this is not a name (and would fold an email's ``To`` over many lines)."""
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s{}]+\.[^@\s{}]+")
"""No braces in the domain: the address is part of a Redis key (a delivery receipt), and a domain like
``b.c}:inbox`` would end that key in the shape of another user's key (see ``notifier/redis/keys.py``)."""


def refuse_control(value: Any) -> Any:
    """A ``mode="before"`` validator for identifiers: refuse control characters before
    ``str_strip_whitespace`` would trim a trailing ``\n`` or ``\t`` into an accepted value."""
    if isinstance(value, str) and (control := _CONTROL.search(value)) is not None:
        raise ValueError(f"contains a control character (U+{ord(control.group()):04X})")
    return value


def new_id() -> str:
    """A notification id: random, URL- and Redis-key-safe."""
    return uuid.uuid4().hex


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Notification(BaseModel):
    """One notification as a producer sends it and a user finally sees it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    label: ClassVar[str] = "notification"

    id: str = Field(default_factory=new_id, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    type: str = Field(pattern=SLUG, description="short slug, e.g. order_update")
    _identifiers = field_validator("id", "type", "collapse_key", mode="before")(refuse_control)
    title: str = Field("", max_length=MAX_TITLE, description="left out when a template renders it")
    body: str = Field("", max_length=MAX_BODY)
    template: str | None = Field(None, description="a template of NOTIFIER_TEMPLATES_DIR, rendered per channel "
                                                   "and user at delivery (default: the type's, if it has one)")
    data: dict[str, JsonValue] = Field(default_factory=dict)
    channels: tuple[ChannelName, ...] | None = None
    priority: Priority = "normal"
    ttl: int | None = Field(None, ge=0, le=MAX_TTL, description="seconds the notification stays relevant")
    collapse_key: str | None = Field(None, min_length=1, max_length=64)
    action_url: str | None = Field(None, max_length=2048)
    timestamp: dt.datetime = Field(default_factory=utcnow)
    send_at: dt.datetime | None = Field(None, description="start later: ISO 8601 with an offset")
    cancel_key: str | None = Field(None, min_length=1, max_length=128, pattern=CANCEL_KEY,
                                   description="notifier.cancel(KEY) stops what is still pending")
    _cancel_key = field_validator("cancel_key", mode="before")(refuse_control)

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        from notifier.templates.folder import check_name

        return check_name(value) if value is not None else None

    @model_validator(mode="after")
    def _title_or_template(self) -> Notification:
        if not self.title and self.template is None and not _has_template(self.type):
            raise ValueError(f"a notification needs a title, or a template (none named, and type {self.type!r} "
                             "has no template in NOTIFIER_TEMPLATES_DIR)")
        return self

    @field_validator("send_at", mode="before")
    @classmethod
    def _send_at(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"send_at {value!r} is not an ISO 8601 time like 2026-12-01T09:00:00+01:00") from None
            if parsed.tzinfo is None:
                raise ValueError(f"send_at {value!r} needs an offset (+01:00, Z): which time zone is meant?")
        elif isinstance(value, dt.datetime) and value.tzinfo is None:
            raise ValueError("send_at needs a time zone (an aware datetime)")
        return value

    @field_validator("send_at")
    @classmethod
    def _send_at_utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value > utcnow() + dt.timedelta(days=366):
            raise ValueError("send_at is more than a year ahead")
        return value.astimezone(dt.UTC) if value is not None else None

    def pending(self, now: dt.datetime | None = None) -> bool:
        """Whether ``send_at`` is still ahead."""
        return self.send_at is not None and self.send_at > (now or utcnow())

    @field_validator("data")
    @classmethod
    def _data_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            raw = orjson.dumps(value)
        except orjson.JSONEncodeError as exc:  # integers beyond 64 bits: no JSON consumer reads them back
            raise ValueError(f"data must be plain JSON: {exc}") from None
        if orjson.loads(raw) != value:  # NaN and Infinity would silently turn into null
            raise ValueError("data must be plain JSON: NaN and Infinity are not JSON numbers")
        size = len(raw)
        if size > MAX_DATA_BYTES:
            raise ValueError(f"data is {size} bytes as JSON; the limit is {MAX_DATA_BYTES}")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("channels must name at least one channel, or be left out")
            value = tuple(dict.fromkeys(value))
        return value

    @field_validator("action_url")
    @classmethod
    def _action_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(https?://[^\s]+|/[^\s]*)", value):
            raise ValueError("action_url must be an http(s) URL or a path starting with /")
        return value

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def expired(self, now: dt.datetime | None = None) -> bool:
        """True once ``ttl`` seconds have passed since ``timestamp`` (deferred sends check this)."""
        if self.ttl is None:
            return False
        return (now or utcnow()) > self.timestamp + dt.timedelta(seconds=self.ttl)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form carried in tasks, the inbox and live events."""
        return self.model_dump(mode="json", exclude_none=True)


def _check_types(slugs: Iterable[str]) -> None:
    for slug in slugs:
        if not re.fullmatch(SLUG, slug):
            raise ValueError(f"{slug!r} is not a notification type slug")


def _has_template(type_: str) -> bool:
    """Whether the templates folder has a template for ``type_`` (imported late: it imports this module)."""
    from notifier.config import get_settings
    from notifier.templates.folder import get_folder

    return get_folder(get_settings().templates_dir).has(type_)


_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)?\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
MAX_DURATION = 30 * 86400


def duration(value: Any, what: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h"`` or ``"1d"``: more than 0, at most 30 days."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a duration like 30s, 15m, 1h or 1d, not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value))
        if match is None:
            raise ValueError(f"{what} must be a duration like 30s, 15m, 1h or 1d, not {value!r}")
        seconds = float(match[1]) * _UNITS[match[2]]
    if not 0 < seconds <= MAX_DURATION:
        raise ValueError(f"{what} must be more than 0 and at most 30d, not {value!r}")
    return seconds


class DigestWindow(BaseModel):
    """A user's own window for a workflow's digest: ``window`` (a duration: ``1h``) or ``at``
    (``HH:MM``: daily, in the user's time zone; the digest closes at the next such time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    label: ClassVar[str] = "digest window"

    window: str | None = None
    at: str | None = None

    @model_validator(mode="after")
    def _one(self) -> DigestWindow:
        if (self.window is None) == (self.at is None):
            raise ValueError("a digest window is either {window: DURATION} or {at: HH:MM}")
        if self.window is not None:
            duration(self.window, "window")
        if self.at is not None and not _TIME.fullmatch(self.at):
            raise ValueError(f"at {self.at!r} is not a time as HH:MM (00:00 to 23:59)")
        return self

    def seconds_from(self, now: dt.datetime, timezone: str) -> float:
        """How long a digest opened ``now`` stays open for this user."""
        if self.window is not None:
            return duration(self.window, "window")
        assert self.at is not None
        local = now.astimezone(zoneinfo.ZoneInfo(timezone))
        at = dt.datetime.combine(local.date(), dt.time.fromisoformat(self.at), tzinfo=local.tzinfo)
        if at <= local:
            at = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time.fromisoformat(self.at),
                                     tzinfo=local.tzinfo)
        return (at.astimezone(dt.UTC) - now.astimezone(dt.UTC)).total_seconds()


class QuietHours(BaseModel):
    """A daily window (``HH:MM``-``HH:MM``, may cross midnight) in the user's time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    label: ClassVar[str] = "quiet hours"

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _TIME.fullmatch(value):
            raise ValueError(f"{value!r} is not a time as HH:MM (00:00 to 23:59)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """``"22:00-07:00"`` as typed on the command line."""
        start, sep, end = text.partition("-")
        if not sep:
            raise ValidationError(f"quiet hours {text!r} must look like HH:MM-HH:MM")
        return validate(cls, {"start": start.strip(), "end": end.strip()})


class Preferences(BaseModel):
    """What one user wants: channels on/off, muted types, quiet hours and contact details."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    label: ClassVar[str] = "preferences"

    channels: dict[ChannelName, bool] = Field(default_factory=dict)
    disabled_types: tuple[str, ...] = ()
    type_channels: dict[str, dict[ChannelName, bool]] = Field(default_factory=dict)
    """Per notification type, channels turned on or off for that type alone (``{"comment": {"email":
    false}}``: the email unsubscribe link sets this); a channel off in ``channels`` stays off."""
    quiet_hours: QuietHours | None = None
    timezone: str = "UTC"
    locale: str | None = Field(None, description="BCP 47 language tag (de, de-AT): the language templates "
                                                 "render in (default: NOTIFIER_DEFAULT_LOCALE)")
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME,
                             description="the user's display name: in an email's To, and for templates")
    _name = field_validator("name", mode="before")(refuse_control)
    email: str | None = None
    phone: str | None = Field(None, description="mobile number for SMS, stored as E.164 (+4915112345678); "
                                                "without + it is read in NOTIFIER_SMS_DEFAULT_REGION")
    phone_invalid: str | None = Field(None, description="why the SMS provider refused the last phone number, "
                                                        "which was removed (set by notifier; a new phone clears it)")
    channel_off_reasons: dict[ChannelName, str] = Field(
        default_factory=dict, description="why notifier turned a channel off (the recipient replied STOP to an "
                                          "SMS); a channel turned on again loses its reason")
    digests: dict[str, DigestWindow] = Field(default_factory=dict)
    """Per workflow (notification type), the user's own window for its digest steps."""

    @field_validator("name")
    @classmethod
    def _name_trimmed(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("name cannot be only spaces: leave it out instead")
        return value.strip() if value is not None else None

    @field_validator("type_channels", "digests")
    @classmethod
    def _keyed_by_type(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_types(value)
        return value

    @field_validator("disabled_types")
    @classmethod
    def _types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_types(value)
        return tuple(sorted(set(value)))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the time zone cannot be empty: name an IANA zone, e.g. Europe/Berlin")
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        from notifier.templates.locales import parse_locale, tag

        return tag(parse_locale(value)) if value is not None else None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.fullmatch(value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        from notifier.config import get_settings
        from notifier.phones import e164

        return e164(value, get_settings().sms_default_region or None) if value is not None else None

    @model_validator(mode="after")
    def _reasons_current(self) -> Preferences:
        """Notes about an address or channel notifier changed go once the user changes it back."""
        stale = [c for c in self.channel_off_reasons if self.channels.get(c, True)]
        if stale or (self.phone is not None and self.phone_invalid is not None):
            reasons = {c: r for c, r in self.channel_off_reasons.items() if c not in stale}
            phone_invalid = None if self.phone is not None else self.phone_invalid
            object.__setattr__(self, "channel_off_reasons", reasons)
            object.__setattr__(self, "phone_invalid", phone_invalid)
        return self

    def channel_enabled(self, channel: str, type_: str | None = None) -> bool:
        """Whether ``channel`` is on, for notifications of ``type_`` when given: both the channel and
        the type's own switch for it (default on) must allow it."""
        on = self.channels.get(channel, True)
        return on and (type_ is None or self.type_channels.get(type_, {}).get(channel, True))

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"digests", "type_channels", "locale", "name", "phone",
                                                    "phone_invalid", "channel_off_reasons"})
        for optional in ("locale", "name", "phone", "phone_invalid"):  # left out when unset, as before they existed
            if getattr(self, optional) is not None:
                out[optional] = getattr(self, optional)
        if self.type_channels:
            out["type_channels"] = self.type_channels
        if self.channel_off_reasons:
            out["channel_off_reasons"] = self.channel_off_reasons
        if self.digests:
            out["digests"] = {t: w.model_dump(exclude_none=True) for t, w in self.digests.items()}
        return out


def validate(model: type[M], value: Any) -> M:
    """Build ``model`` from ``value`` or raise our ``ValidationError`` with a one-line reason.

    The reason names what was invalid in the user's words (the model's ``label``, e.g. "quiet
    hours"), never a class name.
    """
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except PydanticValidationError as exc:
        raise ValidationError(error_summary(exc, getattr(model, "label", model.__name__.lower()), model)) from None


def error_summary(exc: PydanticValidationError, what: str, model: type[BaseModel] | None = None) -> str:
    """One readable line from pydantic's error list: ``invalid WHAT: field: problem; field: problem``.

    Our own validators' messages are kept as written (without pydantic's "Value error, " prefix); a
    pattern mismatch names the value, the pattern and the field's description when it has one.
    """
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = _problem(err, model)
        parts.append(f"{where}: {message}" if where else message)
    return f"invalid {what}: " + "; ".join(parts)


def _problem(err: Any, model: type[BaseModel] | None) -> str:
    if err["type"] == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if err["type"] == "string_pattern_mismatch":
        field = model.model_fields.get(str(err["loc"][0])) if model is not None and err["loc"] else None
        hint = f" ({field.description})" if field is not None and field.description else ""
        return f"{err['input']!r:.80} does not match {err['ctx']['pattern']}{hint}"
    return str(err["msg"])


def parse_json(text: str, what: str) -> Any:
    """``text`` parsed as JSON, or a ValidationError naming ``what`` and where the JSON breaks."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"{what}: {invalid_json(exc.pos, exc.msg)}") from None


def invalid_json(position: int, reason: str) -> str:
    """The one wording for unparsable JSON (CLI options and HTTP bodies alike)."""
    return f"invalid JSON at position {position} ({reason})"


GROUP_RECIPIENT = "group:"
"""The prefix of a group's own recipient id (``notifier.state.groups.group_recipient``), under which
its chat targets are registered; reserved, so no user id can start with it."""


def check_user_id(user_id: Any) -> str:
    """User ids are non-empty strings without control characters (they end up in Redis keys), and
    do not start with :data:`GROUP_RECIPIENT`."""
    check_recipient(user_id)
    if user_id.startswith(GROUP_RECIPIENT):
        raise ValidationError(f"invalid user id {user_id!r}: ids starting with {GROUP_RECIPIENT!r} are a group's "
                              "own targets; register those with --group or POST /v1/groups/{id}/devices")
    return user_id


def check_recipient(user_id: Any) -> str:
    """A user id or a group's recipient id (:data:`GROUP_RECIPIENT`): what the device registry and the
    router take; everything a caller names a user with goes through :func:`check_user_id`."""
    if not isinstance(user_id, str):
        raise ValidationError(f"invalid user id {user_id!r}: a user id is a string, not {type(user_id).__name__}")
    if not user_id.strip():
        raise ValidationError(f"invalid user id {user_id!r}: it is empty or only spaces")
    if len(user_id) > MAX_USER_ID:
        raise ValidationError(f"invalid user id {user_id[:16]!r}...: {len(user_id)} characters, "
                              f"the limit is {MAX_USER_ID}")
    control = _CONTROL.search(user_id)
    if control is not None:
        raise ValidationError(f"invalid user id {user_id!r}: it contains a control character "
                              f"(U+{ord(control.group()):04X})")
    return user_id


def check_channel(name: str) -> str:
    """``name`` if it is a channel in the registry, else ``ValidationError`` listing them."""
    from notifier.channels import registry  # the channel modules import this one

    return registry.check(name)
