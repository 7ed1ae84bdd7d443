"""Rendering per channel and locale from the test templates folder (tests/support/templates), the
folder check, and the model rules for templated notifications."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from notifier.channels.base import Delivery
from notifier.channels.email import Email
from notifier.errors import TemplateRenderError, ValidationError
from notifier.models import Notification, Preferences, validate
from notifier.templates import Recipient, Renderer, check
from notifier.templates.locales import fallback_chain

FOLDER = Path(__file__).parent.parent / "support" / "templates"
DATA = {"text": "Looks <b>good</b>", "posted_at": "2026-12-01T09:30:00Z", "actor": {"name": "Ada"}}


@pytest.fixture
def templates(settings_env: Callable[[dict[str, str]], None]) -> Renderer:
    settings_env({"NOTIFIER_TEMPLATES_DIR": str(FOLDER)})
    return Renderer(str(FOLDER), "en")


def comment(**data: object) -> Notification:
    return Notification(type="comment", data={**DATA, **data})


def digest(count: int) -> Notification:
    return Notification(type="comment", data={**DATA, "digest": {"count": count, "first": [
        {"id": "a", "title": "", "body": "first"}], "last": [{"id": "b", "title": "", "body": "last one"}]}})


def test_each_channel_gets_its_own_parts_in_english(templates: Renderer) -> None:
    user = Recipient("u1", "en", "UTC", "Grace")
    inbox = templates.render(comment(), "realtime", user)
    assert (inbox.title, inbox.body) == ("1 new comment", "Ada commented: Looks <b>good</b>")
    assert templates.render(comment(), "fcm", user, push=True).title == "Ada: 1 new comment"  # push/ override
    mail = templates.render(comment(), "email", user)
    assert mail.subject == "Hello Grace: 1 new comment"
    assert "<q>Looks &lt;b&gt;good&lt;/b&gt;</q>" in mail.html  # HTML autoescaped
    assert "Ada commented: Looks <b>good</b>" in mail.text  # text not escaped
    assert "Posted 12/1/26, 9:30" in mail.html
    assert templates.render(comment(), "sms", user).text == "Ada commented: Looks <b>good</b>"


def test_german_through_the_fallback_chain_with_dates_in_the_users_zone(templates: Renderer) -> None:
    assert fallback_chain("de-AT", "en") == ("de-AT", "de", "en")
    mail = templates.render(comment(), "email", Recipient("u1", "de-AT", "Europe/Vienna", "Grete"))
    assert mail.subject == "Hallo Grete: 1 neuer Kommentar"
    assert "Ada hat kommentiert:" in mail.text and "Sie erhalten diese Nachricht" in mail.text
    assert "Geschrieben am 01.12.26, 10:30" in mail.html  # 09:30 UTC in Vienna, German format
    assert templates.render(digest(5), "realtime", Recipient("u1", "de")).title == "5 neue Kommentare"
    # a locale without a catalogue falls back to the default
    assert templates.render(digest(5), "realtime", Recipient("u1", "fr")).title == "5 new comments"


def test_filters_format_numbers_and_relative_times_per_locale(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "paid").mkdir(parents=True)
    (root / "paid" / "title.txt").write_text('{{ data.total | currency("EUR") }} {{ data.n | number }}')
    (root / "paid" / "body.txt").write_text("{{ data.at | relative }}")
    renderer = Renderer(str(root), "en")
    n = Notification(type="paid", template="paid", title="x", data={
        "total": 1234.5, "n": 1234567, "at": "2026-12-01T09:00:00Z"})
    now = dt.datetime(2026, 12, 1, 9, 5, tzinfo=dt.UTC)
    de = renderer.render(n, "realtime", Recipient("u", "de"), now=now)
    assert (de.title, de.body) == ("1.234,50\xa0€ 1.234.567", "vor 5 Minuten")
    en = renderer.render(n, "realtime", Recipient("u", "en"), now=now)
    assert (en.title, en.body) == ("€1,234.50 1,234,567", "5 minutes ago")


@pytest.mark.parametrize(("count", "title"), [(1, "1 nowy komentarz"), (2, "2 nowe komentarze"),
                                              (5, "5 nowych komentarzy"), (22, "22 nowe komentarze"),
                                              (25, "25 nowych komentarzy")])
def test_polish_has_three_plural_forms(templates: Renderer, count: int, title: str) -> None:
    assert templates.render(digest(count), "realtime", Recipient("u1", "pl")).title == title


def test_arabic_is_right_to_left_with_its_plural_forms(templates: Renderer) -> None:
    user = Recipient("u1", "ar", "Asia/Riyadh")
    assert templates.render(digest(2), "realtime", user).title == "تعليقان جديدان"
    assert templates.render(digest(11), "realtime", user).title == "11 تعليقًا جديدًا"
    mail = templates.render(comment(), "email", user)
    assert '<html lang="ar" dir="rtl">' in mail.html
    assert "علّق Ada:" in mail.text
    assert 'dir="ltr"' in templates.render(comment(), "email", Recipient("u1", "en")).html


def test_a_missing_variable_names_template_line_and_variable(templates: Renderer) -> None:
    n = Notification(type="comment", data={"text": "no actor"})
    with pytest.raises(TemplateRenderError) as caught:
        templates.render(n, "realtime", Recipient("u1", "en"))
    assert (caught.value.template, caught.value.line, caught.value.variable) == ("comment/body.txt", 1, "actor")
    assert "comment/body.txt line 1" in str(caught.value)


def test_the_sandbox_refuses_unsafe_attributes(tmp_path: Path) -> None:
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "title.txt").write_text("{{ data.__class__.__mro__ }}")
    with pytest.raises(TemplateRenderError, match=r"evil/title\.txt line 1"):
        Renderer(str(tmp_path), "en").render(Notification(type="evil", template="evil", data={"a": 1}),
                                             "realtime", Recipient("u", "en"))


def test_a_broadcast_renders_once_unless_the_template_reads_the_user(templates: Renderer) -> None:
    n = comment()
    one, two = (templates.render(n, "realtime", Recipient(u, "de")) for u in ("u1", "u2"))
    assert one is two  # shared: title.txt and body.txt do not read user
    mail1, mail2 = (templates.render(n, "email", Recipient(u, "de", name=u.upper())) for u in ("u1", "u2"))
    assert (mail1.subject, mail2.subject) == ("Hallo U1: 1 neuer Kommentar", "Hallo U2: 1 neuer Kommentar")


def test_email_payload_is_multipart_text_and_html_from_the_rendering(templates: Renderer) -> None:
    n = comment()
    rendered = templates.render(n, "email", Recipient("u1", "de", name="Grete"))
    msg = Email().build_payload(Delivery("u1", n, "grete@example.test", rendered))
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"] == "Hallo Grete: 1 neuer Kommentar"
    assert "Ada hat kommentiert:" in msg.get_body(("plain",)).get_content()
    assert "<q>Looks &lt;b&gt;good&lt;/b&gt;</q>" in msg.get_body(("html",)).get_content()


def test_the_test_folder_checks_clean() -> None:
    assert check(str(FOLDER)) == []


def broken_copy(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(FOLDER, root)
    return root


def test_check_names_file_and_line_of_a_syntax_error(tmp_path: Path) -> None:
    root = broken_copy(tmp_path)
    (root / "comment" / "body.html").write_text("<p>fine</p>\n<p>{% if data.text %}unclosed</p>\n")
    problems = check(str(root))
    assert len(problems) == 1 and problems[0].startswith(f"{root}/comment/body.html:")
    assert "endif" in problems[0] or "end of template" in problems[0]


def test_check_names_a_variable_the_example_lacks(tmp_path: Path) -> None:
    root = broken_copy(tmp_path)
    (root / "comment" / "push" / "title.txt").write_text("{{ actor.name }}\n{{ data.missing }}\n")
    problems = check(str(root))
    assert problems and all(f"{root}/comment/push/title.txt:2:" in p and "'missing'" in p for p in problems)


def test_check_names_file_and_line_of_a_broken_catalogue(tmp_path: Path) -> None:
    root = broken_copy(tmp_path)
    po = root / "locales" / "de.po"
    po.write_text(po.read_text().replace('msgstr "Zuletzt:"', 'msgtsr "Zuletzt:"'))
    problems = check(str(root))
    assert len(problems) == 1 and problems[0].startswith(f"{po}:")


def test_check_needs_example_data_per_type(tmp_path: Path) -> None:
    root = broken_copy(tmp_path)
    (root / "comment" / "example.json").unlink()
    assert check(str(root)) == [f"{root}/comment/example.json: missing: each type needs example data for the "
                                'check, {"data": {...}, "user": {"name": ...}}']


def test_a_notification_needs_a_title_or_a_template(templates: Renderer) -> None:
    with pytest.raises(ValidationError, match="needs a title, or a template"):
        validate(Notification, {"type": "order"})
    assert validate(Notification, {"type": "comment"}).title == ""  # its type has a template
    assert validate(Notification, {"type": "order", "template": "comment"}).template == "comment"
    with pytest.raises(ValidationError, match="not a template name"):
        validate(Notification, {"type": "order", "template": "../comment"})


def test_preferences_locale_is_a_bcp47_tag_babel_knows() -> None:
    assert validate(Preferences, {"locale": "de-at"}).locale == "de-AT"
    for bad in ("german", "de_AT", "xx-ZZ"):
        with pytest.raises(ValidationError, match="locale"):
            validate(Preferences, {"locale": bad})


def test_cli_check_prints_each_problem_and_exits_1(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from notifier.cli import main

    root = broken_copy(tmp_path)
    (root / "comment" / "title.txt").write_text("{{ count }\n")
    result = CliRunner().invoke(main, ["templates", "check", str(root)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{root}/comment/title.txt:1: ")
    assert CliRunner().invoke(main, ["templates", "check", str(FOLDER)]).exit_code == 0


def test_cli_render_shows_a_type_in_a_locale(templates: Renderer) -> None:
    import orjson
    from click.testing import CliRunner

    from notifier.cli import main

    result = CliRunner().invoke(main, ["templates", "render", "comment", "--channel", "email", "--locale", "de",
                                       "--name", "Grete", "--data", orjson.dumps(DATA).decode()])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.stdout)
    assert shown["subject"] == "Hallo Grete: 1 neuer Kommentar" and "<q>Looks &lt;b&gt;" in shown["html"]
    sms = CliRunner().invoke(main, ["templates", "render", "comment", "--channel", "sms", "--data",
                                    orjson.dumps({**DATA, "text": "Looks good 👍"}).decode()])
    assert sms.exit_code == 0, sms.output
    text = orjson.loads(sms.stdout)["text"]
    assert text == "Ada commented: Looks good 👍" and orjson.loads(sms.stdout)["sms"] == {
        "encoding": "UCS-2", "units": len(text) + 1, "segments": 1, "per_segment": 70}  # the emoji: 2 units
    bad = CliRunner().invoke(main, ["templates", "render", "comment", "--locale", "klingon"])
    assert bad.exit_code == 1 and "locale: 'klingon' is not a locale Babel knows" in bad.stderr


def test_number_filter_writes_integers_exactly_as_babel_does_in_every_locale() -> None:
    """The integer fast path (``formatting._integer_signs``) agrees with Babel wherever it is taken,
    and leaves to Babel the locales that group otherwise (Indian lakhs, other digits)."""
    import random

    from babel import numbers
    from babel.localedata import locale_identifiers
    from jinja2 import Environment

    from notifier.templates.formatting import FILTERS, _integer_signs
    from notifier.templates.locales import parse_locale

    env = Environment()
    env.filters.update(FILTERS)
    template = env.from_string("{{ value | number }}")
    rng = random.Random(17)
    values = [0, 7, -7, 1234, -1234, 10**15, *(rng.randint(-10**12, 10**12) for _ in range(20))]
    for ident in locale_identifiers()[::7]:
        tag = ident.replace("_", "-")
        try:
            locale = parse_locale(tag)
        except ValueError:
            continue
        for value in values:
            assert template.render(value=value, locale=tag) == numbers.format_decimal(value, locale=locale), (tag, value)
    assert _integer_signs("hi-IN") is None  # 12,34,567: left to Babel
    assert _integer_signs("de") == (".", "-") and template.render(value=-1234567, locale="sv") == "-1\xa0234\xa0567"


@pytest.mark.parametrize("locale", ["de", "pl", "ar", "fr"])
def test_gettext_calls_render_as_jinja2s_own_newstyle_gettext(templates: Renderer, locale: str) -> None:
    """The direct gettext functions (``rendering._gettext_callables``) give what Jinja2's stock
    newstyle ones give, text and HTML (marked safe, variables escaped), in every form."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from notifier.templates.locales import fallback_chain, translations_for

    source = ('{{ _("Hello %(user)s", user=who) }}|{{ gettext("Latest:") }}|{{ _("Open") }}|'
              '{% for n in [1, 2, 5, 22, 25] %}{{ ngettext("%(num)d new comment", "%(num)d new comments", n) }};'
              '{% endfor %}|{% trans name=who %}{{ name }} commented: {% endtrans %}|'
              '{% trans count=3 %}{{ count }} new comment{% pluralize %}{{ count }} new comments{% endtrans %}|'
              '{{ pgettext("menu", "Open") }}|{{ npgettext("menu", "%(num)d item", "%(num)d items", 2) }}|'
              '{{ _("100%% sure") }}|{{ _("<em>%(user)s</em> wrote", user=who) }}')
    ours = templates.environment(locale)
    chain = tuple(t for t in fallback_chain(locale, "en") if t in templates.catalogues)
    for html in (False, True):
        stock = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=html, extensions=["jinja2.ext.i18n"])
        stock.install_gettext_translations(translations_for(chain, templates.catalogues), newstyle=True)  # type: ignore[attr-defined]
        mine = ours.overlay(autoescape=html)
        for who in ("Ada", "<b>Bob</b> & Co"):
            expected = stock.from_string(source).render(who=who)
            assert mine.from_string(source).render(who=who) == expected
            assert ("&lt;b&gt;Bob" in expected) == (html and who != "Ada")
            assert "<em>" in expected  # a translation's own markup stays markup, in HTML too
