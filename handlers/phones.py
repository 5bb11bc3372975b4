"""Phone numbers as E.164, the one form every lookup uses."""

from __future__ import annotations

import phonenumbers


def normalize_phone(raw: str | None, region: str = "RU") -> str | None:
    """E.164 for anything a person or a telephony provider may send, or None if it is not a phone.

    Russian numbers written the domestic way ("8 916 123-45-67") count as +7, as callers expect.
    """
    if not raw:
        return None
    text = raw.strip()
    if len(text) > 40:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    digits = "".join(ch for ch in text if ch.isdigit())
    if region == "RU" and not text.startswith("+") and len(digits) == 11 and digits[0] in "78":
        text = "+7" + digits[1:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
