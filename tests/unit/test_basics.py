import pytest

from config import load_business_config
from handlers.i18n import Translator, pick_language
from handlers.phones import normalize_phone
from handlers.pin import hash_pin, verify_pin


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8 916 123-45-67", "+79161234567"),
        ("+7 (916) 123 45 67", "+79161234567"),
        ("79161234567", "+79161234567"),
        ("9161234567", "+79161234567"),
        ("0044 20 7183 8750", "+442071838750"),
        ("+1 415 555 2671", "+14155552671"),
        ("", None),
        (None, None),
        ("hello", None),
        ("12", None),
        ("9" * 500, None),
    ],
)
def test_phone_normalisation(raw, expected):
    assert normalize_phone(raw) == expected


def test_pin_hash_is_salted_and_verifies():
    first, second = hash_pin("1234"), hash_pin("1234")
    assert first != second and "1234" not in first
    assert verify_pin("1234", first) and verify_pin("1234", second)
    assert not verify_pin("1235", first)
    assert not verify_pin("1234", None) and not verify_pin("", first) and not verify_pin("1234", "garbage")


@pytest.mark.parametrize(("code", "lang"), [("ru", "ru"), ("en-GB", "en"), ("uk", "ru"), ("de", "en"), (None, "ru")])
def test_pick_language(code, lang):
    assert pick_language(code) == lang


def test_translator_formats_and_survives_missing_values():
    t = Translator(load_business_config())
    assert "+7495" in t("service_unavailable", "ru", phone="+74950000000")
    assert t("service_unavailable", "en", phone="1").startswith("The service")
    assert t("service_unavailable", "xx", phone="1").startswith("Сервис")  # unknown language: default
    assert "{phone}" not in t("service_unavailable", "en")  # a missing value is logged, not raised
    assert t("no_such_text", "en") == "no_such_text"
