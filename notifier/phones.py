"""Phone numbers as the SMS providers take them: E.164 (``+4915112345678``), parsed with
``phonenumbers`` (Google's libphonenumber metadata), so a number is checked against its country's
numbering plan once, when a user gives it, not by each provider at send time.

A number written with ``+`` and its country code needs nothing else; one written the national way
(``0151 1234 5678``) needs a region to be read in, ``NOTIFIER_SMS_DEFAULT_REGION``, and without one
is refused with a message asking for the ``+`` form.
"""

from __future__ import annotations

import phonenumbers


def e164(value: str, region: str | None = None) -> str:
    """``value`` as E.164, read in ``region`` (ISO 3166 alpha-2, e.g. ``DE``) when it has no ``+``;
    ``ValueError`` saying what is wrong otherwise."""
    text = value.strip()
    if not text:
        raise ValueError("the phone number is empty: leave it out instead")
    if not text.startswith("+") and not region:
        raise ValueError(f"{value!r} has no country code: write it as +COUNTRY NUMBER (e.g. +49 151 12345678), "
                         "or set NOTIFIER_SMS_DEFAULT_REGION for numbers written without one")
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_number(number) or f"+{number.country_code}"
        raise ValueError(f"{value!r} is not a valid phone number in {where}: check its digits and country code")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_region(region: str) -> str:
    """``region`` upper-cased if ``phonenumbers`` knows it (``""`` stays ``""``: no default region)."""
    if region and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{region!r} is not a region code phonenumbers knows: use ISO 3166 alpha-2, e.g. DE or US")
    return region.upper()
