"""Rendering: a notification's template into each channel's text, in the user's language.

One sandboxed Jinja2 environment per fallback chain of catalogues (``de-AT`` and ``de`` share one when
there is no ``de-AT.po``), each compiling a template the first time it is used and keeping it for the
life of the process (``cache_size=-1``, no reloading). ``StrictUndefined`` turns a variable the
notification does not have into a :class:`~notifier.errors.TemplateRenderError` naming the template,
line and variable, so nothing half-rendered is sent. HTML templates are autoescaped, text ones not.

A broadcast renders once per (notification, channel, locale, time zone), not once per user, unless
its templates read ``user``: :meth:`Renderer.render` keeps recent results.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from gettext import NullTranslations
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from notifier.config import get_settings
from notifier.errors import TemplateRenderError, ValidationError
from notifier.models import Notification
from notifier.templates.folder import LAYOUT_DIR, TemplateFolder, get_folder
from notifier.templates.formatting import FILTERS
from notifier.templates.locales import Catalogue, fallback_chain, load_catalogues, parse_locale, tag, translations_for

_MISSING = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")
CACHE_SIZE = 4096
"""Rendered results kept per process: a broadcast's batches reuse them across users."""


@dataclass(frozen=True)
class Rendered:
    """What a channel sends, rendered for one user: ``title``/``body`` for every channel, and for
    email ``subject``, ``html`` and ``text`` (the whole parts), for SMS ``text``."""

    title: str
    body: str = ""
    subject: str = ""
    html: str = ""
    text: str = ""


@dataclass(frozen=True)
class Recipient:
    """Who a rendering is for: what templates may read as ``user`` and what the filters format with."""

    user_id: str
    locale: str
    timezone: str = "UTC"
    name: str | None = None


def channel_kind(channel: str, push: bool = False) -> str:
    """Which parts ``channel`` gets: ``email`` (subject, HTML, text), ``sms`` (text) or ``inapp``
    (title and body; ``push`` channels look in ``push/`` too)."""
    return channel if channel in ("email", "sms") else "push" if push else "inapp"


_Files = tuple[str, str | None, str | None, str | None]
"""A rendering's title, body, subject and HTML files (None: the channel has no such part, or the
folder no such file)."""
_Plan = tuple[str, str, ImmutableSandboxedEnvironment, _Files, bool]


class Renderer:
    """The templates of one folder, compiled on first use per locale chain and kept."""

    def __init__(self, root: str, default_locale: str, folder: TemplateFolder | None = None) -> None:
        self.folder: TemplateFolder = folder or get_folder(root)
        self.default_locale = fallback_chain(default_locale, default_locale)[0]
        self.catalogues: dict[str, Catalogue] = load_catalogues(self.folder.root)
        self._environments: dict[tuple[str, ...], ImmutableSandboxedEnvironment] = {}
        self._reads_user: dict[str, bool] = {}
        self._compiled: dict[tuple[ImmutableSandboxedEnvironment, str], Template] = {}
        """Compiled templates by environment and name (Jinja2's own cache asks its loader's key first)."""
        self._plans: dict[tuple[str, str, bool, str], _Plan] = {}
        self._results: OrderedDict[tuple[Any, ...], Rendered] = OrderedDict()
        self._lock = threading.Lock()

    def template_of(self, notification: Notification) -> str | None:
        """The template a notification renders with: the one it names, or its type's; None: it is
        sent as written."""
        if notification.template:
            return notification.template
        return notification.type if self.folder.has(notification.type) else None

    def environment(self, locale: str) -> ImmutableSandboxedEnvironment:
        """The environment whose gettext speaks ``locale`` (along its fallback chain)."""
        chain = tuple(t for t in fallback_chain(locale, self.default_locale) if t in self.catalogues)
        env = self._environments.get(chain)
        if env is None:
            with self._lock:
                env = self._environments.get(chain)
                if env is None:
                    env = self._environments[chain] = self._new_environment(chain)
        return env

    def _new_environment(self, chain: tuple[str, ...]) -> ImmutableSandboxedEnvironment:
        env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(self.folder.search_path), undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
            extensions=["jinja2.ext.i18n"], auto_reload=False, cache_size=-1)
        env.filters.update(FILTERS)
        translations = translations_for(chain, self.catalogues)
        env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
        env.globals.update(_gettext_callables(translations))
        return env

    def render(self, notification: Notification, channel: str, recipient: Recipient, *, push: bool = False,
               now: dt.datetime | None = None) -> Rendered:
        """``notification`` rendered for ``recipient`` on ``channel``; ``TemplateRenderError`` (with
        template, line, variable) when a template fails."""
        name = self.template_of(notification)
        if name is None:
            raise TemplateRenderError(f"notification {notification.id} names no template", template="")
        wanted = (name, channel, push, recipient.locale)
        plan = self._plans.get(wanted)
        if plan is None:
            plan = self._plans[wanted] = self._plan(*wanted)
        locale, kind, env, files, personal = plan
        key = (notification.id, name, channel, kind, locale, recipient.timezone,
               recipient.user_id if personal else None)
        found = self._results.get(key)
        if found is not None:
            return found
        context = _context(notification, recipient, locale, now or dt.datetime.now(dt.UTC))
        title_file, body_file, subject_file, html_file = files
        title = _line(self._render(env, title_file, context))
        body = self._render(env, body_file, context).strip() if body_file else ""
        if kind == "email":
            subject = _line(self._render(env, subject_file, context)) if subject_file else title
            html = Markup(self._render(env, html_file, context)) if html_file else None
            result = self._email(env, subject, body, html, notification.action_url, context)
        elif kind == "sms":
            result = Rendered(title, body, text=body)
        else:
            result = Rendered(title, body)
        with self._lock:
            self._results[key] = result
            if len(self._results) > CACHE_SIZE:
                self._results.popitem(last=False)
        return result

    def preview(self, name: str, channel: str, locale: str | None = None, data: dict[str, Any] | None = None,
                user: Recipient | None = None) -> Rendered:
        """Template ``name`` rendered for ``channel`` with ``data`` (default: its ``example.json``'s), as a
        user of ``locale`` would get it (``notifier templates render``, ``GET /v1/templates/{type}/preview``)."""
        from notifier.channels import registry
        from notifier.models import check_channel, validate

        if channel != "sms":
            check_channel(channel)
        if not self.folder.has(name):
            known = f"; there are: {', '.join(sorted(self.folder.types))}" if self.folder.types else ""
            raise ValidationError(f"no template {name!r} in NOTIFIER_TEMPLATES_DIR "
                                  f"({self.folder.root or 'not set'}){known}")
        example = self.folder.example(name) if data is None or user is None else {}
        if data is None:
            data = example.get("data", {})
        shown = example.get("user", {})
        name_shown = str(shown["name"]) if shown.get("name") else None
        recipient = user or Recipient(str(shown.get("id", "preview-user")), locale or self.default_locale,
                                      str(shown.get("timezone", "UTC")), name_shown)
        if locale is not None:
            recipient = Recipient(recipient.user_id, locale, recipient.timezone, recipient.name)
        push = channel in registry.names() and registry.channel_class(channel).is_push
        notification = validate(Notification, {"id": f"preview-{time.monotonic_ns()}", "type": name,
                                               "template": name, "data": data})
        return self.render(notification, channel, recipient, push=push)

    def plain_email(self, notification: Notification) -> Rendered:
        """A notification without a template, in the email layout (the default locale): as before templates."""
        subject = _line(notification.title)
        env = self.environment(self.default_locale)
        context = {"locale": self.default_locale, "timezone": "UTC", "direction": direction(self.default_locale)}
        return self._email(env, subject, notification.body, None, notification.action_url, context)

    def _email(self, env: ImmutableSandboxedEnvironment, subject: str, body: str, html: Markup | None,
               action_url: str | None, context: dict[str, Any]) -> Rendered:
        layout = {**context, "title": subject, "body": body, "html": html, "action_url": action_url}
        text = self._render(env, f"{LAYOUT_DIR}/email.txt", layout)
        page = self._render(env, f"{LAYOUT_DIR}/email.html", layout)
        return Rendered(subject, body, subject=subject, html=page, text=text)

    def _plan(self, name: str, channel: str, push: bool, wanted: str) -> _Plan:
        """What rendering ``name`` on ``channel`` for a user of locale ``wanted`` takes, worked out once
        (per delivery it cost ~4 µs of a 30 µs render): the locale used, the channel's kind, the
        environment, the files and whether they read ``user``."""
        locale = fallback_chain(wanted or self.default_locale, self.default_locale)[0]
        kind = channel_kind(channel, push)
        files = self._find(name, channel, kind, push)
        return locale, kind, self.environment(locale), files, any(self._reads(f) for f in files if f)

    def _find(self, name: str, channel: str, kind: str, push: bool) -> _Files:
        find = functools.partial(self.folder.find, name, channel, push=push)
        title = find("title.txt")
        if title is None:
            raise TemplateRenderError(f"template {name!r} is not in NOTIFIER_TEMPLATES_DIR "
                                      f"({self.folder.root or 'not set'})", template=name)
        email = kind == "email"
        return (title, find("body.txt"), find("subject.txt") if email else None,
                find("body.html") if email else None)

    def _reads(self, template: str) -> bool:
        """Whether ``template`` reads ``user`` (then its result is per user, never shared)."""
        reads = self._reads_user.get(template)
        if reads is None:
            env = self.environment(self.default_locale)
            try:
                assert env.loader is not None
                source = env.loader.get_source(env, template)[0]
                reads = "user" in meta.find_undeclared_variables(env.parse(source))
            except TemplateError:
                reads = True  # the render names the problem
            self._reads_user[template] = reads
        return reads

    def _render(self, env: ImmutableSandboxedEnvironment, name: str | None, context: dict[str, Any]) -> str:
        assert name is not None
        try:
            template = self._compiled.get((env, name))
            if template is None:
                template = self._compiled[env, name] = env.get_template(name)
            try:
                # Template.render, with the merged globals passed in: it would merge them from a ChainMap
                # per call, a third of a short template's rendering time
                parent = {**env.globals, **context}
                return env.concat(template.root_render_func(
                    env.context_class(env, parent, template.name, template.blocks, template.globals)))
            except Exception:  # noqa: BLE001  (what Template.render does: the traceback's lines become the template's)
                env.handle_exception()
        except TemplateSyntaxError as exc:
            raise TemplateRenderError(f"template {exc.name or name} line {exc.lineno}: {exc.message}",
                                      template=exc.name or name, line=exc.lineno) from None
        except TemplateNotFound as exc:
            raise TemplateRenderError(f"template {name}: {exc.name} not found", template=name) from None
        except (TemplateError, ValueError, TypeError, AttributeError, ArithmeticError, LookupError) as exc:
            raise render_error(exc, name, self.folder.search_path) from None


def _gettext_callables(translations: NullTranslations) -> dict[str, Any]:
    """Jinja2's newstyle gettext functions (``jinja2.ext._make_new_gettext`` and its siblings: the
    result marked safe under autoescape, then always ``%``-formatted with the call's variables), calling
    the catalogue directly rather than through ``Context.call``: the catalogue is ours, not a
    template's, so the sandbox's check of it only cost time, ~3 µs of a 8 µs ``_()``
    (``benchmarks/template_sends.py``). ``_`` is ``gettext`` itself, not Jinja2's alias that resolves
    it again per call."""
    plain, plural = translations.gettext, translations.ngettext
    particular, particular_plural = translations.pgettext, translations.npgettext

    def done(context: Context, rv: str, variables: dict[str, Any]) -> str:
        return (Markup(rv) if context.eval_ctx.autoescape else rv) % variables

    @pass_context
    def gettext(__context: Context, __string: str, **variables: Any) -> str:
        return done(__context, plain(__string), variables)

    @pass_context
    def ngettext(__context: Context, __singular: str, __plural: str, __num: int, **variables: Any) -> str:
        variables.setdefault("num", __num)
        return done(__context, plural(__singular, __plural, __num), variables)

    @pass_context
    def pgettext(__context: Context, __string_ctx: str, __string: str, **variables: Any) -> str:
        variables.setdefault("context", __string_ctx)
        return done(__context, particular(__string_ctx, __string), variables)

    @pass_context
    def npgettext(__context: Context, __string_ctx: str, __singular: str, __plural: str, __num: int,
                  **variables: Any) -> str:
        variables.setdefault("context", __string_ctx)
        variables.setdefault("num", __num)
        return done(__context, particular_plural(__string_ctx, __singular, __plural, __num), variables)

    return {"gettext": gettext, "ngettext": ngettext, "pgettext": pgettext, "npgettext": npgettext,
            "_": gettext}


def render_error(exc: BaseException, name: str, roots: list[str]) -> TemplateRenderError:
    """``exc`` raised while rendering ``name`` as a :class:`TemplateRenderError`: the template and line
    from the traceback (the innermost template frame, an included one too) and the missing variable."""
    template, line = name, None
    for frame in traceback.extract_tb(exc.__traceback__):
        for root in roots:
            if frame.filename.startswith(root.rstrip("/") + "/"):
                template, line = frame.filename[len(root.rstrip("/")) + 1:], frame.lineno
    match = _MISSING.search(str(exc))
    variable = (match.group(1) or match.group(2)) if match else None
    where = f"template {template}" + (f" line {line}" if line else "")
    what = f"{exc}" + (f" (variable {variable!r})" if variable else "")
    return TemplateRenderError(f"{where}: {what}", template=template, line=line, variable=variable)


@functools.lru_cache(maxsize=256)
def direction(locale: str) -> str:
    """``rtl`` for a right-to-left script (Arabic, Hebrew), else ``ltr``: the HTML ``dir`` attribute."""
    return "rtl" if parse_locale(locale).character_order == "right-to-left" else "ltr"


def _line(text: str) -> str:
    """A title or subject is one line: a header cannot hold a line break (other spaces, such as the
    no-break space in "1.234,50 €", stay)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _context(n: Notification, recipient: Recipient, locale: str, now: dt.datetime) -> dict[str, Any]:
    """What templates read: ``data``, ``actor`` (``data.actor``), a digest's ``events`` and ``count``
    (a single notification is a digest of one), ``user``, ``notification``, ``locale``, ``timezone``,
    ``now`` and ``direction`` (``rtl`` or ``ltr``)."""
    data = n.data
    digest = data.get("digest")
    brief = {"id": n.id, "title": n.title, "body": n.body}
    if isinstance(digest, dict):
        events = [*_list(digest.get("first")), *_list(digest.get("last"))]
        count = digest.get("count", len(events))
    else:
        events, count = [brief], 1
    user: dict[str, Any] = {"id": recipient.user_id, "locale": locale, "timezone": recipient.timezone}
    if recipient.name:
        user["name"] = recipient.name
    context: dict[str, Any] = {
        "data": data, "events": events, "count": count, "user": user, "locale": locale,
        "timezone": recipient.timezone, "now": now, "direction": direction(locale),
        "notification": {**brief, "type": n.type, "action_url": n.action_url, "priority": n.priority,
                         "timestamp": n.timestamp.isoformat()}}
    if "actor" in data:
        context["actor"] = data["actor"]
    return context


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


_renderers: dict[tuple[str, str], Renderer] = {}
_renderers_lock = threading.Lock()


def get_renderer() -> Renderer:
    """The process's renderer of ``NOTIFIER_TEMPLATES_DIR`` (built once per folder and default locale)."""
    settings = get_settings()
    key = (settings.templates_dir, settings.default_locale)
    renderer = _renderers.get(key)
    if renderer is None:
        with _renderers_lock:
            renderer = _renderers.get(key) or Renderer(*key)
            _renderers[key] = renderer
    return renderer


__all__ = ["Recipient", "Rendered", "Renderer", "channel_kind", "get_renderer", "render_error", "tag"]
