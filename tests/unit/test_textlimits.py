"""Cutting text to a provider's limit on a grapheme boundary, and SMS segments (notifier/textlimits.py)."""

from __future__ import annotations

import pytest

from notifier.textlimits import ELLIPSIS, fit_title_body, graphemes, sms_length, truncate, utf8_size

FAMILY = "\U0001F468\u200D\U0001F469\u200D\U0001F467"  # man ZWJ woman ZWJ girl: one grapheme, 18 bytes
FLAG = "\U0001F1E9\U0001F1EA"  # regional indicators D E: one flag, 8 bytes
ACCENTED = "e\u0301\u0323"  # e with two combining marks: one grapheme, 5 bytes


def test_text_within_the_limit_is_unchanged() -> None:
    assert truncate("hello", 5) == "hello"
    assert truncate(FAMILY, 18) == FAMILY


@pytest.mark.parametrize(("unit", "count"), [(FAMILY, 10), (FLAG, 20), (ACCENTED, 30)])
def test_cut_keeps_whole_graphemes_and_ends_with_an_ellipsis(unit: str, count: int) -> None:
    text = unit * count
    for limit in range(3, utf8_size(text)):
        cut = truncate(text, limit)
        assert utf8_size(cut) <= limit
        assert cut.endswith(ELLIPSIS)
        kept = cut[:-1]
        assert kept == unit * (len(kept) // len(unit)), f"limit {limit}: a grapheme was split: {kept[-4:]!r}"
        assert utf8_size(kept) + utf8_size(unit) + utf8_size(ELLIPSIS) > limit, "cut more than needed"


def test_cut_counts_characters_when_asked_and_drops_trailing_space() -> None:
    assert truncate("Hello wonderful world", 12, size=len) == "Hello wonde…"
    assert truncate("Hello wonderful world", 7, size=len) == "Hello…"
    assert truncate(FLAG * 5, 3, size=len) == FLAG + ELLIPSIS
    assert truncate("abcdef", 2) == ""  # the ellipsis alone is 3 UTF-8 bytes
    assert graphemes(f"a{FAMILY}{FLAG}{ACCENTED}") == ["a", FAMILY, FLAG, ACCENTED]


def test_fit_cuts_the_body_first_then_the_title() -> None:
    def size(title: str, body: str) -> int:
        return 10 + utf8_size(title) + utf8_size(body)

    assert fit_title_body("Title", "Body", 100, size) == ("Title", "Body")
    assert fit_title_body("Title", "A long body text", 25, size) == ("Title", "A long…")
    assert fit_title_body("A long title here", "Body", 20, size) == ("A long…", "")
    assert fit_title_body("Title", "Body", 5, size) == ("Title", "Body"), "hopeless: left to the size check"


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", "GSM-7", 0, 0),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),  # the extension table counts double
    ("€" * 81, "GSM-7", 162, 2),
    ("a" + "€" * 79, "GSM-7", 159, 1),
    ("a" * 152 + "{" + "a" * 10, "GSM-7", 164, 2),
    ("a" * 152 + "{" + "a" * 152, "GSM-7", 306, 3),  # the escape pair may not straddle two parts
    ("Grüße", "GSM-7", 5, 1),  # ü and ß are in the default alphabet
    ("Zoë", "UCS-2", 3, 1),  # ë is not
    ("ж" * 70, "UCS-2", 70, 1),
    ("ж" * 71, "UCS-2", 71, 2),
    ("😀" * 35, "UCS-2", 70, 1),  # a surrogate pair: two UCS-2 units
    ("😀" * 36, "UCS-2", 72, 2),
    ("a" + "😀" * 33 + "a" * 34, "UCS-2", 101, 2),
    ("a" * 66 + "😀" + "a" * 66, "UCS-2", 134, 3),  # the pair may not straddle two parts
])
def test_sms_segments(text: str, encoding: str, units: int, segments: int) -> None:
    length = sms_length(text)
    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)
    assert length.per_segment == ({"GSM-7": 160, "UCS-2": 70} if segments <= 1 else
                                  {"GSM-7": 153, "UCS-2": 67})[encoding]
