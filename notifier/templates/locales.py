"""Locales: BCP 47 tags checked with Babel, the fallback chain, and the gettext catalogues.

A user's ``locale`` (preferences) is a BCP 47 tag such as ``de-AT``; it falls back to its shorter
forms and then to ``NOTIFIER_DEFAULT_LOCALE`` (``de-AT`` -> ``de`` -> ``en``). Translations are
gettext ``.po`` files in the templates folder's ``locales/`` (``locales/de.po``, ``locales/de-AT.po``),
compiled in memory with Babel once per process; each locale's :class:`babel.support.Translations`
falls back along the chain, so a message missing in ``de-AT.po`` comes from ``de.po``.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po
from babel.support import NullTranslations, Translations

from notifier.errors import TemplateFolderError

_BCP47 = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
LOCALES_DIR = "locales"


@functools.lru_cache(maxsize=256)
def parse_locale(tag: str) -> Locale:
    """The Babel locale of a BCP 47 tag (``de``, ``de-AT``, ``zh-Hant-TW``), or ``ValueError`` saying
    what a tag looks like."""
    if not isinstance(tag, str) or not _BCP47.fullmatch(tag):
        raise ValueError(f"{tag!r} is not a BCP 47 language tag (e.g. en, de-AT, pt-BR, zh-Hant-TW)")
    try:
        return Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError) as exc:
        raise ValueError(f"{tag!r} is not a locale Babel knows ({exc}); use a tag like en, de-AT or pt-BR") from None


def tag(locale: Locale) -> str:
    """A Babel locale as a BCP 47 tag (``de_AT`` -> ``de-AT``)."""
    return str(locale).replace("_", "-")


@functools.lru_cache(maxsize=1024)
def fallback_chain(locale_tag: str, default: str) -> tuple[str, ...]:
    """The tags tried for ``locale_tag``, most specific first, ending with ``default``:
    ``de-AT`` -> ``("de-AT", "de", "en")``."""
    parts = tag(parse_locale(locale_tag)).split("-")
    chain = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    for extra in fallback_chain(default, default) if default != locale_tag and "-" in default else (default,):
        if extra not in chain:
            chain.append(extra)
    return tuple(chain)


@dataclass(frozen=True)
class Catalogue:
    """One compiled ``.po`` file."""

    locale: str
    path: Path
    compiled: bytes
    """The ``.mo`` form: each fallback chain builds its own :class:`Translations` from it (a chain links
    them, so they cannot be shared)."""

    def translations(self) -> Translations:
        return Translations(io.BytesIO(self.compiled))


def load_catalogue(path: Path) -> Catalogue:
    """Compile one ``locales/TAG.po``; ``TemplateFolderError`` names the file and line of a problem."""
    try:
        locale = parse_locale(path.stem)
    except ValueError as exc:
        raise TemplateFolderError(f"{path}: the file name must be a locale: {exc}") from None
    try:
        with path.open("rb") as fp:
            catalog = read_po(fp, locale=locale, abort_invalid=True)
    except PoFileError as exc:
        raise TemplateFolderError(f"{path}:{exc.lineno}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateFolderError(f"{path}: cannot read it ({exc})") from None
    problems = [f"{path}:{message.lineno}: {message.id!r}: {error}"
                for message, errors in catalog.check() for error in errors]
    if problems:
        raise TemplateFolderError("; ".join(problems))
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    return Catalogue(tag(locale), path, buffer.getvalue())


def load_catalogues(folder: Path | None) -> dict[str, Catalogue]:
    """Every catalogue in ``folder/locales``, by BCP 47 tag (none without a folder)."""
    if folder is None or not (folder / LOCALES_DIR).is_dir():
        return {}
    found: dict[str, Catalogue] = {}
    for path in sorted((folder / LOCALES_DIR).glob("*.po")):
        catalogue = load_catalogue(path)
        if catalogue.locale in found:
            raise TemplateFolderError(f"{path}: a second catalogue for {catalogue.locale} "
                                      f"(also {found[catalogue.locale].path.name})")
        found[catalogue.locale] = catalogue
    return found


def translations_for(chain: tuple[str, ...], catalogues: Mapping[str, Catalogue]) -> NullTranslations:
    """The translations of the first catalogue on ``chain``, falling back along the rest of it."""
    found = [catalogues[t].translations() for t in chain if t in catalogues]
    if not found:
        return NullTranslations()
    for fallback in found[1:]:
        found[0].add_fallback(fallback)
    return found[0]
