"""Templates and locales: each channel's text rendered from a folder of Jinja2 templates per
notification type, in the user's language.

One concept per module: ``folder`` (what the folder holds and which file a channel uses), ``locales``
(BCP 47 tags, fallback chains, gettext catalogues through Babel), ``formatting`` (the Babel filters),
``rendering`` (the sandboxed environments and :class:`Rendered`), ``checking`` (``notifier templates
check`` and the worker's start check). The package also holds the built-in email layout
(``layout/email.html``, ``layout/email.txt``).
"""

from __future__ import annotations

from notifier.templates.checking import check, require_valid
from notifier.templates.rendering import Recipient, Rendered, Renderer, channel_kind, get_renderer

__all__ = ["Recipient", "Rendered", "Renderer", "channel_kind", "check", "get_renderer", "require_valid"]
