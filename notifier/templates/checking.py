"""The check of a templates folder, before anything is sent with it (``notifier templates check``, and
every worker at start).

Every template is compiled (syntax errors name the file and line), every catalogue compiled (its
file and line), and every type rendered with its ``example.json`` on every kind of channel in the
default locale and in each catalogue's locale, with ``StrictUndefined``: a variable the example
does not have is the error a real delivery would meet.
"""

from __future__ import annotations

from notifier.errors import TemplateFolderError, TemplateRenderError
from notifier.models import Notification
from notifier.templates.folder import scan
from notifier.templates.rendering import Recipient, Renderer

KINDS = (("realtime", False), ("push", True), ("email", False), ("sms", False))
"""One channel of each kind: the in-app inbox, push, email and SMS get different parts."""


def check(root: str, default_locale: str = "en") -> list[str]:
    """Every problem of the folder ``root``, one line each naming the file and line; empty when fine."""
    try:
        # listed afresh: the check reads the folder as it is now, not as this process first saw it
        renderer = Renderer(root, default_locale, folder=scan(root))
    except TemplateFolderError as exc:
        return [str(exc)]
    problems: list[str] = []
    env = renderer.environment(renderer.default_locale)
    for name in renderer.folder.templates():
        try:
            env.get_template(name)
        except Exception as exc:  # noqa: BLE001  (any compile error is reported with its file)
            line = getattr(exc, "lineno", None)
            problems.append(f"{_path(renderer, name)}:{line or '?'}: {exc}")
    if problems:
        return problems
    locales = [renderer.default_locale, *sorted(set(renderer.catalogues) - {renderer.default_locale})]
    for type_ in sorted(renderer.folder.types):
        try:
            example = renderer.folder.example(type_)
        except TemplateFolderError as exc:
            problems.append(str(exc))
            continue
        user = example.get("user", {})
        notification = Notification(type=type_, template=type_, data=example.get("data", {}))
        for locale in locales:
            recipient = Recipient(str(user.get("id", "example-user")), locale, str(user.get("timezone", "UTC")),
                                  str(user["name"]) if user.get("name") else None)
            for channel, push in KINDS:
                try:
                    renderer.render(notification, channel, recipient, push=push)
                except TemplateRenderError as exc:
                    where = f"{_path(renderer, exc.template)}:{exc.line or '?'}"
                    problems.append(f"{where}: {exc} ({channel}, {locale}, with {type_}/example.json)")
    return list(dict.fromkeys(problems))


def require_valid(root: str, default_locale: str = "en") -> None:
    """Raise :class:`TemplateFolderError` listing the folder's problems (a worker will not start)."""
    problems = check(root, default_locale)
    if problems:
        raise TemplateFolderError(f"templates folder {root} is invalid: " + "; ".join(problems))


def _path(renderer: Renderer, name: str) -> str:
    root = renderer.folder.root
    return str(root / name) if root is not None and (root / name).exists() else name or str(root)


__all__ = ["check", "require_valid"]
