"""Email addresses as header values: ``Display Name <local@domain>``, parsed and checked once.

Senders come from settings and recipients' names from preferences; either could carry a line break
that would start a header of its own (``Bcc:``). Here an address is parsed into
:class:`email.headerregistry.Address`, whose display name the email package quotes or encodes as
the header needs, and anything with a control character is refused before it gets that far.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.policy import default

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ITEM = re.compile(r"\s*([a-z0-9][a-z0-9_.-]{0,63})\s*=\s*(.+?)\s*")
_NEXT_ITEM = re.compile(r",(?=\s*[a-z0-9][a-z0-9_.-]{0,63}\s*=)")
"""A comma that starts the next ``type=`` item (a display name may hold commas of its own)."""


def mailbox(text: str, what: str) -> Address:
    """``text`` (``"Name <a@b.example>"`` or ``"a@b.example"``) as an address; ``ValueError``
    naming ``what`` when it is not one."""
    if _CONTROL.search(text):
        raise ValueError(f"{what} {text!r} contains a control character (a line break would start a new header)")
    try:
        header = default.header_factory("From", text)
        addresses = header.addresses
    except (HeaderParseError, ValueError, IndexError):
        addresses, header = (), None
    if header is None or len(addresses) != 1 or header.defects or not addresses[0].username or not addresses[0].domain:
        raise ValueError(f"{what} {text!r} is not one email address like 'Name <sender@example.com>'")
    return Address(display_name=addresses[0].display_name, username=addresses[0].username,
                   domain=addresses[0].domain)


def recipient(address: str, name: str | None) -> Address | str:
    """The ``To`` of a user: their display name with the address; the bare address when the email
    package cannot split it (the address was checked when the user saved it)."""
    local, _, domain = address.rpartition("@")
    try:
        return Address(display_name=name or "", username=local, domain=domain)
    except (HeaderParseError, ValueError, IndexError):
        return address


def senders_by_type(value: str) -> dict[str, Address]:
    """``"comment=Comments <c@example.com>, billing=b@example.com"`` as ``{type: address}``."""
    if _CONTROL.search(value):
        raise ValueError("contains a control character (a line break would start a new header)")
    senders: dict[str, Address] = {}
    for item in filter(str.strip, _NEXT_ITEM.split(value)):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"{item.strip()!r} is not TYPE=ADDRESS (e.g. comment=Comments <comments@example.com>)")
        slug, text = match.groups()
        if slug in senders:
            raise ValueError(f"type {slug!r} is named twice")
        senders[slug] = mailbox(text, f"the sender for {slug!r}")
    return senders
