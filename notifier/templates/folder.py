"""The templates folder: which template files exist per notification type, and which one a channel uses.

Layout (``NOTIFIER_TEMPLATES_DIR``)::

    comment/               one folder per notification type (or ``template`` name)
      title.txt            the title, every channel (required)
      body.txt             the body, every channel (email: the text part; sms: the text)
      subject.txt          email subject (default: the title)
      body.html            email HTML body (default: the body, escaped, in the layout)
      example.json         example data for `notifier templates check`: {"data": {...}, "user": {...}}
      email/ push/ sms/ realtime/ fcm/ apns/ webpush/   per-channel overrides of the files above
    locales/de.po ...      gettext catalogues, one per locale (see ``locales.py``)
    layout/email.html      optional: replaces the built-in email layout (also layout/email.txt)

A channel's file is looked up in its own folder, then ``push/`` for the push channels, then the
type's folder. The folder is listed once per process; templates are read by Jinja2's loader.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from notifier.errors import TemplateFolderError
from notifier.templates.locales import LOCALES_DIR

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
"""A template name (a type folder): a notification type without dots, so never a path."""
LAYOUT_DIR = "layout"
PUSH_GROUP = "push"
PARTS = ("title.txt", "body.txt", "subject.txt", "body.html")
EXAMPLE = "example.json"
BUILTIN = Path(str(resources.files("notifier").joinpath("templates")))
"""The package's own folder: the default ``layout/email.html`` and ``layout/email.txt``."""


def check_name(name: str) -> str:
    """``name`` if it can name a template, else ``ValueError`` (no dots or slashes: never a path)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"template {name!r} is not a template name: lowercase letters, digits, _ and -, "
                         "up to 64 (a folder of NOTIFIER_TEMPLATES_DIR)")
    return name


@dataclass(frozen=True)
class TemplateFolder:
    """What the folder holds, listed once: its types and, per type, the relative paths of its files."""

    root: Path | None
    types: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def search_path(self) -> list[str]:
        """Jinja2's loader path: the folder first (it may replace the layout), then the built-in one."""
        return [str(p) for p in (self.root, BUILTIN) if p is not None]

    def has(self, name: str) -> bool:
        return name in self.types

    def find(self, name: str, channel: str, part: str, push: bool = False) -> str | None:
        """The template (a loader name, ``comment/email/title.txt``) ``channel`` uses for ``part``."""
        files = self.types.get(name, frozenset())
        for where in (channel, PUSH_GROUP if push else None, ""):
            if where is None:
                continue
            relative = f"{where}/{part}" if where else part
            if relative in files:
                return f"{name}/{relative}"
        return None

    def templates(self) -> list[str]:
        """Every template file of every type (loader names), for the check."""
        return sorted(f"{name}/{f}" for name, files in self.types.items() for f in files if f.endswith(PARTS))

    def example(self, name: str) -> dict[str, Any]:
        """The type's ``example.json``: ``{"data": {...}, "user": {...}}``; ``TemplateFolderError``
        when it is missing or not such JSON."""
        assert self.root is not None
        path = self.root / name / EXAMPLE
        try:
            value = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise TemplateFolderError(f"{path}: missing: each type needs example data for the check, "
                                      '{"data": {...}, "user": {"name": ...}}') from None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise TemplateFolderError(f"{path}: not JSON ({exc})") from None
        if not isinstance(value, dict) or not set(value) <= {"data", "user"} or not all(
                isinstance(v, dict) for v in value.values()):
            raise TemplateFolderError(f'{path}: must be an object {{"data": {{...}}, "user": {{...}}}} '
                                      f"(found {str(value)[:80]})")
        return value


def scan(root: str) -> TemplateFolder:
    """List the folder ``root`` (``""``: none, only the built-in layout); a missing folder, a type
    folder with a name no notification can have, or one without ``title.txt`` is a ``TemplateFolderError``."""
    if not root:
        return TemplateFolder(None)
    path = Path(root)
    if not path.is_dir():
        raise TemplateFolderError(f"NOTIFIER_TEMPLATES_DIR {root!r} is not a folder")
    types: dict[str, frozenset[str]] = {}
    for entry in sorted(path.iterdir()):
        if not entry.is_dir() or entry.name in (LOCALES_DIR, LAYOUT_DIR) or entry.name.startswith("."):
            continue
        try:
            check_name(entry.name)
        except ValueError as exc:
            raise TemplateFolderError(f"{entry}: {exc}") from None
        files = frozenset(str(f.relative_to(entry)) for f in entry.rglob("*") if f.is_file())
        if "title.txt" not in files:
            raise TemplateFolderError(f"{entry}: no title.txt (every template has a title)")
        types[entry.name] = files
    return TemplateFolder(path, types)


@functools.lru_cache(maxsize=8)
def get_folder(root: str) -> TemplateFolder:
    """The folder ``root`` as listed the first time this process asked (templates are compiled once)."""
    return scan(root)
