"""Text that must fit a provider's limit: cut on a grapheme boundary, and SMS length in segments.

A cut in the middle of a grapheme cluster shows a broken character: half a flag, a family emoji
split into its members, an ``e`` without its accent. Clusters are found with the ``regex``
package's ``\\X`` (Unicode's extended grapheme clusters, UAX #29), so a cut keeps whole
user-perceived characters and never a part of a UTF-8 sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import regex

ELLIPSIS = "…"
_GRAPHEME = regex.compile(r"\X")


def utf8_size(text: str) -> int:
    return len(text.encode())


def graphemes(text: str) -> list[str]:
    """``text`` as its user-perceived characters."""
    return _GRAPHEME.findall(text)


def truncate(text: str, limit: int, size: Callable[[str], int] = utf8_size) -> str:
    """``text`` if ``size(text) <= limit``; else its longest prefix of whole graphemes that fits with
    an ellipsis appended (``""`` when not even the ellipsis fits).

    ``size`` says how the provider counts: UTF-8 bytes by default, ``len`` for characters, or the
    size of a whole payload built around the text.
    """
    if size(text) <= limit:
        return text
    if size(ELLIPSIS) > limit:
        return ""
    clusters = graphemes(text)
    low, high = 0, len(clusters)  # the prefix of `low` clusters fits; of `high` does not
    while high - low > 1:
        middle = (low + high) // 2
        if size("".join(clusters[:middle]).rstrip() + ELLIPSIS) <= limit:
            low = middle
        else:
            high = middle
    return "".join(clusters[:low]).rstrip() + ELLIPSIS


def fit_title_body(title: str, body: str, limit: int, size: Callable[[str, str], int]) -> tuple[str, str]:
    """Title and body cut so that ``size(title, body) <= limit``: the body gives way first, then the
    title. When even an empty title and body do not fit (the rest of the payload is too big), they
    are returned as they are and the channel's size check refuses the payload."""
    if size(title, body) <= limit or size("", "") > limit:
        return title, body
    if size(title, "") <= limit:
        return title, truncate(body, limit, lambda b: size(title, b))
    return truncate(title, limit, lambda t: size(t, "")), ""


GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
"""The GSM 03.38 default alphabet: one septet each."""
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
"""The extension table: an escape septet plus one, so each counts as two."""


@dataclass(frozen=True)
class SmsLength:
    """How an SMS is sent: its encoding, length in that encoding's units, and parts."""

    encoding: str
    """``"GSM-7"`` or ``"UCS-2"``."""
    units: int
    """Septets (GSM-7, extension characters count 2) or UTF-16 code units (UCS-2)."""
    segments: int
    """Parts the message is sent in (0 for an empty text)."""
    per_segment: int
    """Units one part holds: 160 / 70 for a single part, 153 / 67 per part once concatenated."""


def sms_length(text: str) -> SmsLength:
    """The encoding and segment count a carrier bills ``text`` at.

    GSM-7 when every character is in the default alphabet or its extension table (160 septets, or
    153 per part once split: the concatenation header takes 7); otherwise UCS-2 (70 UTF-16 units, or
    67 per part), where a character outside the Basic Multilingual Plane (most emoji) takes two. A
    part never ends between an extension character's two septets or a surrogate pair's two units,
    so a long text can need one part more than its units divided by the part size.
    """
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        encoding, sizes, single, multi = "GSM-7", [2 if c in GSM7_EXTENSION else 1 for c in text], 160, 153
    else:
        encoding, sizes, single, multi = "UCS-2", [2 if ord(c) > 0xFFFF else 1 for c in text], 70, 67
    units = sum(sizes)
    if units <= single:
        return SmsLength(encoding, units, 1 if units else 0, single)
    segments, used = 1, 0
    for unit in sizes:
        if used + unit > multi:
            segments, used = segments + 1, 0
        used += unit
    return SmsLength(encoding, units, segments, multi)
