"""What a workflow is: steps a notification of one ``type`` goes through, each with an optional condition.

Built from plain data (a workflow file, or Python: ``Workflow.build("comment", [{"channel": "realtime"},
{"delay": "15m"}, {"channel": "email", "if": "unread"}])``); every problem is a ``ValueError`` whose text
names the step, so ``files`` can add the file and line.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from notifier.channels import registry
from notifier.models import duration

PUSH = "push"
"""A channel step meaning every push channel the user has a device on (FCM, APNs, web push)."""
_COMPARE = re.compile(r"\s*(data|prefs)((?:\.[A-Za-z0-9_-]+)+)\s*(==|!=|>=|<=|>|<)\s*(.+?)\s*")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class Condition:
    """When a step runs: ``unread`` / ``read`` (the in-app copy, as the inbox has it now), or a
    comparison on the notification's ``data`` or the user's preferences (``data.amount > 100``,
    ``prefs.channels.push == false``; the right side is a JSON value)."""

    kind: str
    """``unread``, ``read`` or ``compare``."""
    source: str = ""
    path: tuple[str, ...] = ()
    op: str = ""
    value: Any = None

    @classmethod
    def parse(cls, text: Any) -> Condition:
        if not isinstance(text, str):
            raise ValueError(f"if must be a string (unread, read, or a comparison like data.amount > 100), "
                             f"not {text!r}")
        word = text.strip()
        if word in ("unread", "read"):
            return cls(word)
        if word == "unseen":
            raise ValueError("if: unseen needs an inbox that records seen, which this one does not yet; "
                             "use unread")
        match = _COMPARE.fullmatch(text)
        if match is None:
            raise ValueError(f"if: {text!r} is not a condition: use unread, read, or a comparison like "
                             "data.amount > 100 or prefs.channels.push == false")
        try:
            value = orjson.loads(match[4])
        except orjson.JSONDecodeError:
            raise ValueError(f"if: {text!r}: the right side must be a JSON value (a number, true, false, "
                             f"null or a \"quoted string\"), not {match[4]}") from None
        return cls("compare", match[1], tuple(match[2].strip(".").split(".")), match[3], value)

    def holds(self, data: Mapping[str, Any], prefs: Mapping[str, Any], unread: bool) -> bool:
        """Whether the step runs; a comparison with a missing field, or between values of kinds that
        do not compare (a string and a number), is false."""
        if self.kind == "unread":
            return unread
        if self.kind == "read":
            return not unread
        found: Any = data if self.source == "data" else prefs
        for part in self.path:
            if not isinstance(found, Mapping) or part not in found:
                return False
            found = found[part]
        try:
            return bool(_OPERATORS[self.op](found, self.value))
        except TypeError:
            return False

    def __str__(self) -> str:
        if self.kind != "compare":
            return self.kind
        return f"{self.source}.{'.'.join(self.path)} {self.op} {orjson.dumps(self.value).decode()}"


@dataclass(frozen=True)
class Step:
    """One step; ``kind`` says which of the other fields matter."""

    kind: str
    """``channel`` (send on ``channel``; ``*`` is every wanted channel, as without a workflow),
    ``delay`` (wait ``seconds``), ``throttle`` (at most ``limit`` per ``seconds`` per user and
    ``key``; over it, the run ends there) or ``digest`` (roll the events of ``seconds`` per user and
    ``key`` into one; ``limit``, when not 0, closes it early at that many)."""
    condition: Condition | None = None
    channel: str = ""
    seconds: float = 0.0
    limit: int = 0
    key: str = ""
    held: bool = True
    """Whether the router may hold a channel step's send back (rate limits, quiet hours); a roll-up's
    summary is what was held back, so it is not held again."""

    def describe(self) -> str:
        text = {"channel": f"channel {self.channel}", "delay": f"delay {self.seconds:g}s",
                "throttle": f"throttle {self.limit} per {self.seconds:g}s"
                            + (f" by {self.key}" if self.key else ""),
                "digest": f"digest {self.seconds:g}s" + (f" by {self.key}" if self.key else "")
                          + (f", at most {self.limit}" if self.limit else "")}[self.kind]
        return f"{text} if {self.condition}" if self.condition else text


ROLLUP = "rollup:"
"""Workflow name prefix of the roll-ups (:meth:`Workflow.rollup`); no notification type can take it
(a type is a slug, which has no ``:``)."""
ALL_CHANNELS = Step("channel", channel="*")
"""The one step of a notification whose type has no workflow: every wanted, enabled channel."""
_KINDS = ("channel", "delay", "throttle", "digest")


def parse_step(raw: Any) -> Step:
    """A step from its mapping: exactly one of ``channel``, ``delay``, ``throttle``, optionally ``if``."""
    if isinstance(raw, str):
        raw = {"channel": raw}
    if not isinstance(raw, Mapping):
        raise ValueError(f"a step is a mapping like {{channel: email}} or {{delay: 15m}}, not {raw!r}")
    kinds = [k for k in raw if k in _KINDS]
    unknown = [k for k in raw if k not in (*_KINDS, "if")]
    if unknown:
        raise ValueError(f"unknown step field {unknown[0]!r}: a step has one of channel, delay, throttle, "
                         "digest, and optionally if")
    if len(kinds) != 1:
        raise ValueError("a step has exactly one of channel, delay, throttle, digest"
                         + (f", not {' and '.join(kinds)}" if kinds else ""))
    kind = kinds[0]
    condition = Condition.parse(raw["if"]) if "if" in raw else None
    value = raw[kind]
    if kind == "channel":
        if value != PUSH and value not in registry.names():
            raise ValueError(f"channel {value!r} is not registered: use push or one of "
                             f"{', '.join(sorted(registry.names()))}")
        return Step("channel", condition, channel=value)
    if kind == "delay":
        return Step("delay", condition, seconds=duration(value, "delay"))
    if kind == "digest":
        return _digest(value, condition)
    if not isinstance(value, Mapping) or "limit" not in value or "window" not in value:
        raise ValueError("throttle needs {limit: N, window: DURATION} and optionally key: data.FIELD")
    extra = set(value) - {"limit", "window", "key"}
    if extra:
        raise ValueError(f"unknown throttle field {sorted(extra)[0]!r}: throttle has limit, window, key")
    limit = value["limit"]
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise ValueError(f"throttle limit must be a whole number from 1 to 10000, not {limit!r}")
    key = value.get("key", "")
    if key and not re.fullmatch(r"data(\.[A-Za-z0-9_-]+)+", str(key)):
        raise ValueError(f"throttle key must name a data field like data.post_id, not {key!r}")
    return Step("throttle", condition, seconds=duration(value["window"], "throttle window"), limit=limit,
                key=str(key))


def _digest(value: Any, condition: Condition | None) -> Step:
    if not isinstance(value, Mapping) or "window" not in value:
        raise ValueError("digest needs {window: DURATION} and optionally key: data.FIELD and max: N")
    extra = set(value) - {"window", "key", "max"}
    if extra:
        raise ValueError(f"unknown digest field {sorted(extra)[0]!r}: digest has window, key, max")
    most = value.get("max", 0)
    if isinstance(most, bool) or not isinstance(most, int) or not 0 <= most <= 10_000:
        raise ValueError(f"digest max must be a whole number from 1 to 10000, not {most!r}")
    key = value.get("key", "")
    if key and not re.fullmatch(r"data(\.[A-Za-z0-9_-]+)+", str(key)):
        raise ValueError(f"digest key must name a data field like data.post_id, not {key!r}")
    return Step("digest", condition, seconds=duration(value["window"], "digest window"), limit=most, key=str(key))


@dataclass(frozen=True)
class Workflow:
    """The steps for one notification ``type``; ``critical`` ones bypass quiet hours and the user's
    type opt-outs (never a channel the user turned off)."""

    type: str
    steps: tuple[Step, ...]
    critical: bool = False

    @classmethod
    def build(cls, type_: str, steps: Sequence[Any], critical: bool = False) -> Workflow:
        """From plain data; a ``ValueError`` names the step (``step 2 (delay): ...``)."""
        if not isinstance(steps, Sequence) or isinstance(steps, (str, bytes)) or not steps:
            raise ValueError("steps must be a non-empty list")
        if not isinstance(critical, bool):
            raise ValueError(f"critical must be true or false, not {critical!r}")
        parsed = []
        for number, raw in enumerate(steps, 1):
            try:
                parsed.append(parse_step(raw))
            except ValueError as exc:
                raise StepError(number, raw, str(exc)) from None
        return cls(type_, tuple(parsed), critical)

    @staticmethod
    def implicit(type_: str) -> Workflow:
        """What a type without a workflow does: every wanted channel at once (for a roll-up's
        ``rollup.CHANNEL``, :meth:`rollup`)."""
        if type_.startswith(ROLLUP):
            return Workflow.rollup(type_.removeprefix(ROLLUP))
        return Workflow(type_, (ALL_CHANNELS,))

    @staticmethod
    def rollup(channel: str) -> Workflow:
        """Sends a rate limit or quiet hours held back on ``channel``: they wait in the user's digest
        of that channel until the hold ends (the first one's), then go out as one summary."""
        return Workflow(f"{ROLLUP}{channel}", (Step("digest"), Step("channel", channel=channel, held=False)))


class StepError(ValueError):
    """A step that does not parse, with its number (from 1) so the file's line can be found."""

    def __init__(self, number: int, raw: Any, reason: str) -> None:
        self.number = number
        name = next((k for k in raw if k in (*_KINDS, "digest")), "?") if isinstance(raw, Mapping) else "?"
        super().__init__(f"step {number} ({name}): {reason}")


def value_at(data: Mapping[str, Any], path: str) -> Any:
    """The value of ``data.a.b`` in a notification's data (``path`` starts with ``data.``), or None."""
    found: Any = data
    for part in path.split(".")[1:]:
        if not isinstance(found, Mapping):
            return None
        found = found.get(part)
    return found
