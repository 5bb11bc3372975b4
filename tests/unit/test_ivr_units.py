"""The IVR's pure parts: speech rendering, the TwiML dialect, call state, signature checks, small helpers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from handlers.dto import ClientProfile
from ivr.flow import clean_inbound, period_for_key
from ivr.security import RequestGuard, is_loopback
from ivr.speech import money_digits, money_words, ru_plural, say_date, say_digits, say_time
from ivr.state import CallState, CallStateStore
from ivr.steps import Dial, Gather, Hangup, Pause, Record, Redirect, Say
from ivr.twiml import TwimlRenderer
from storage.kv import MemoryKeyValue

# ---------------------------------------------------------------------- speech


@pytest.mark.parametrize(("amount", "expected"), [
    ("1234.56", "1 234 рубля 56 копеек"),
    ("1.01", "1 рубль 1 копейка"),
    ("22.02", "22 рубля 2 копейки"),
    ("11.11", "11 рублей 11 копеек"),
    ("112.00", "112 рублей"),
    ("21", "21 рубль"),
    ("-500", "−500 рублей"),
    ("1000000", "1 000 000 рублей"),
])
def test_money_digits_russian_plural_forms(amount: str, expected: str) -> None:
    assert money_digits(Decimal(amount), "RUB", "ru") == expected


def test_money_digits_english() -> None:
    assert money_digits(Decimal("1234.56"), "RUB", "en") == "1,234 roubles 56 kopecks"
    assert money_digits(Decimal("1.01"), "RUB", "en") == "1 rouble 1 kopeck"
    assert money_digits(Decimal("3"), "XYZ", "en") == "3.00 XYZ"


@pytest.mark.parametrize(("amount", "expected"), [
    ("1234.56", "одна тысяча двести тридцать четыре рубля пятьдесят шесть копеек"),
    ("1.01", "один рубль одна копейка"),  # feminine "одна копейка"
    ("22.02", "двадцать два рубля две копейки"),
    ("-500", "минус пятьсот рублей"),
    ("0", "ноль рублей"),
])
def test_money_words_russian(amount: str, expected: str) -> None:
    assert money_words(Decimal(amount), "RUB", "ru") == expected


def test_money_words_english_and_rounding() -> None:
    assert money_words(Decimal("2.5"), "USD", "en") == "two dollars, fifty cents"
    assert money_words(Decimal("0.005"), "RUB", "ru") == "ноль рублей одна копейка"  # half up


@given(st.integers(min_value=0, max_value=10**6))
def test_ru_plural_matches_the_grammar_rule(n: int) -> None:
    form = ru_plural(n, ("рубль", "рубля", "рублей"))
    if n % 100 in (11, 12, 13, 14):
        assert form == "рублей"
    elif n % 10 == 1:
        assert form == "рубль"
    elif n % 10 in (2, 3, 4):
        assert form == "рубля"
    else:
        assert form == "рублей"


def test_dates_are_said_naturally() -> None:
    assert say_date(date(2026, 12, 15), "ru") == "пятнадцатого декабря две тысячи двадцать шестого года"
    assert say_date(date(2026, 12, 1), "ru", today=date(2026, 11, 22)) == "первого декабря"
    assert say_date(date(2026, 11, 22), "ru", today=date(2026, 11, 22)) == "сегодня"
    assert say_date(date(2026, 11, 23), "en", today=date(2026, 11, 22)) == "tomorrow"
    assert say_date(date(2027, 3, 8), "en", today=date(2026, 11, 22)) == "March 8, 2027"
    assert say_time(datetime(2026, 1, 1, 9, 0, tzinfo=UTC), "ru") == "9:00"
    assert say_time(datetime(2026, 1, 1, 14, 5, tzinfo=UTC), "en") == "2:05 PM"


def test_ticket_numbers_are_read_digit_by_digit() -> None:
    assert say_digits("2026-000123", "ru") == "два ноль два шесть, ноль ноль ноль один два три"
    assert say_digits("2026-000123", "en") == "two zero two six, zero zero zero one two three"
    assert say_digits("T-7", "en") == "T, seven"


# ---------------------------------------------------------------------- TwiML


def test_twiml_renders_every_step_with_escaping_and_absolute_urls() -> None:
    renderer = TwimlRenderer({"ru": "Polly.Tatyana", "en": "Polly.Joanna"},
                             lambda path: "https://x.example" + path)
    xml = renderer.render([
        Say('ООО «Ромашка» & <Co> "quoted"', "ru"),
        Gather(action="/ivr/twilio/gather?s=1&x=2", language="en", prompts=(Say("Hi", "en"), Pause(1)),
               speech=True, num_digits=1, hints=("balance", "operator")),
        Record(action="/r?s=2", status_callback="/rs", max_length=60),
        Dial(numbers=("+74950000001",), action="/d?s=3", timeout=20),
        Redirect(url="/ivr/twilio/menu?s=4"),
        Hangup(),
    ])
    root = ET.fromstring(xml)
    assert [el.tag for el in root] == ["Say", "Gather", "Record", "Dial", "Redirect", "Hangup"]
    say = root[0]
    assert say.text == 'ООО «Ромашка» & <Co> "quoted"'
    assert say.attrib == {"voice": "Polly.Tatyana", "language": "ru-RU"}
    gather = root[1]
    assert gather.attrib == {"input": "dtmf speech", "action": "https://x.example/ivr/twilio/gather?s=1&x=2",
                             "method": "POST", "timeout": "6", "speechTimeout": "auto", "numDigits": "1",
                             "language": "en-US", "hints": "balance, operator", "actionOnEmptyResult": "true"}
    assert [el.tag for el in gather] == ["Say", "Pause"]
    assert root[2].get("recordingStatusCallback") == "https://x.example/rs"
    assert root[2].get("playBeep") == "true" and root[2].get("maxLength") == "60"
    assert root[3].find("Number").text == "+74950000001"  # type: ignore[union-attr]
    assert root[4].text == "https://x.example/ivr/twilio/menu?s=4"


def test_keypad_only_gather_has_no_speech_attributes() -> None:
    xml = TwimlRenderer({"ru": "Polly.Tatyana"}).render(
        [Gather(action="/g", language="ru", speech=False, finish_on_key="#", hints=("x",))])
    gather = ET.fromstring(xml)[0]
    assert gather.get("input") == "dtmf" and "speechTimeout" not in gather.attrib and "hints" not in gather.attrib
    assert gather.get("finishOnKey") == "#"


# ---------------------------------------------------------------------- state


def _client() -> ClientProfile:
    return ClientProfile(customer_id=7, name="Иванов Иван Иванович", kind="person", segment="mass", language="ru",
                         phones=("+79161234567",), email=None, telegram_user_id=None, account_numbers=("200001",),
                         manager_id=None, manager_name=None, has_consent=True)


async def test_call_state_round_trips_through_the_store_with_a_claim_per_step() -> None:
    store = CallStateStore(MemoryKeyValue())
    state = CallState(sid="CA1", caller="+79161234567", language="ru", seq=3, node="menu", client=_client(),
                      last_reply="<Response/>", extra={"served": True})
    await store.save(state)
    loaded = await store.load("CA1")
    assert loaded == state and isinstance(loaded.client.phones, tuple)  # type: ignore[union-attr]
    assert await store.load("CA2") is None
    assert await store.claim("CA1", 3) is True
    assert await store.claim("CA1", 3) is False
    assert await store.claim("CA1", 4) is True


async def test_unreadable_state_is_treated_as_missing() -> None:
    kv = MemoryKeyValue()
    await kv.set("ivr:call:CA9", "{not json")
    assert await CallStateStore(kv).load("CA9") is None


# ---------------------------------------------------------------------- signatures


def test_signature_is_checked_against_the_public_url_behind_a_proxy() -> None:
    guard = RequestGuard("tok", "https://fo.example.com/base")
    params = {"CallSid": "CA1", "From": "+79161234567"}
    public = "https://fo.example.com/base/ivr/twilio/gather?s=2"
    sig = RequestValidator("tok").compute_signature(public, params)
    common = {"path_qs": "/ivr/twilio/gather?s=2", "seen_url": "http://10.0.0.5:8080/ivr/twilio/gather?s=2",
              "remote": "10.0.0.1"}
    assert guard.allows(**common, headers={"X-Twilio-Signature": sig}, params=params)
    assert not guard.allows(**common, headers={}, params=params)
    assert not guard.allows(**common, headers={"X-Twilio-Signature": sig}, params={**params, "Digits": "1"})
    assert not guard.allows(**{**common, "path_qs": "/ivr/twilio/gather?s=3"},
                            headers={"X-Twilio-Signature": sig}, params=params)


def test_without_a_token_only_loopback() -> None:
    guard = RequestGuard(None, None)
    assert guard.warnings() and not guard.signed
    kw = {"path_qs": "/", "seen_url": "http://h/", "headers": {}, "params": {}}
    assert guard.allows(remote="127.0.0.1", **kw) and guard.allows(remote="::1", **kw)
    assert not guard.allows(remote="192.168.1.5", **kw) and not guard.allows(remote=None, **kw)
    assert is_loopback("127.8.0.1") and not is_loopback("not-an-ip")


# ---------------------------------------------------------------------- helpers


def test_periods_by_key() -> None:
    today = date(2026, 2, 10)
    assert period_for_key("1", today) == (date(2026, 1, 1), date(2026, 1, 31))
    assert period_for_key("2", today) == (date(2026, 2, 1), today)
    assert period_for_key("3", today) == (date(2025, 10, 1), date(2025, 12, 31))
    assert period_for_key("4", today) == (date(2026, 1, 1), today)
    assert period_for_key("9", today) is None


def test_inbound_fields_are_cleaned() -> None:
    inbound = clean_inbound({"Digits": "12<x>#", "SpeechResult": "  нет \n связи ", "RecordingDuration": "abc",
                             "DialCallStatus": "no-answer", "RecordingUrl": ""})
    assert inbound.digits == "12#" and inbound.speech == "нет связи"
    assert inbound.recording_duration is None and inbound.recording_url is None
    assert inbound.dial_status == "no-answer"


# ---------------------------------------------------------------------- group commit of call starts


async def test_group_commit_batches_concurrent_items_and_isolates_a_bad_one() -> None:
    import asyncio

    from sqlalchemy.exc import IntegrityError

    from ivr.calllog import GroupCommit

    batches: list[list[int]] = []
    written: list[int] = []

    async def write(items: list[int]) -> None:
        batches.append(list(items))
        await asyncio.sleep(0.01)
        if 13 in items:  # a duplicate call: the database refuses the whole batch
            raise IntegrityError("INSERT", {}, Exception("duplicate"))
        if 1000 in items:
            raise RuntimeError("database gone")
        written.extend(items)

    group = GroupCommit(write, max_batch=50)
    await asyncio.gather(*(group.add(i) for i in range(120)))
    assert sorted(written) == [i for i in range(120) if i != 13]
    assert len(batches) < 120 // 2  # shared transactions, not one per item
    assert all(len(b) <= 50 for b in batches)
    with pytest.raises(RuntimeError):
        await group.add(1000)


def test_transfer_words_match_russian_endings_but_not_english_lookalikes() -> None:
    from ivr.flow import _mentions

    ru = "оператор, человек, сотрудник, специалист, менеджер, соедините"
    en = "operator, real person, human, agent, representative, manager"
    assert _mentions("Соедините меня с оператором!", ru)
    assert _mentions("хочу поговорить с менеджером", ru)
    assert not _mentions("не работает интернет", ru)
    assert _mentions("I want a real person please", en) and _mentions("Operator.", en)
    assert not _mentions("my personal account balance", en)
    assert not _mentions("the agents of change", en)
