"""The IVR's per-request shortcuts give the same answers as the long way round."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from handlers.dto import ClientProfile
from ivr.security import RequestGuard
from ivr.state import _CLIENT_FIELDS, _STATE_FIELDS, CallState

BASE = "https://ivr.example.com"
PROFILE = ClientProfile(customer_id=7, name="Иванова Мария", kind="person", segment="b2c", language="ru",
                        phones=("+79161234567",), email=None, telegram_user_id=42, account_numbers=("100200",),
                        manager_id=None, manager_name=None, has_consent=True)


def _long_way(state: CallState) -> str:
    data = {name: getattr(state, name) for name in _STATE_FIELDS}
    if state.client is not None:
        data["client"] = {name: getattr(state.client, name) for name in _CLIENT_FIELDS}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


def test_state_json_same_content_and_round_trip() -> None:
    states = [
        CallState(sid="CA1", caller=None, language="en"),
        CallState(sid="CA2", caller="+79161234567", language="ru", seq=3, node="menu", client=PROFILE,
                  last_reply='<?xml version="1.0"?><Response><Say>Здравствуйте "вы"</Say></Response>',
                  extra={"served": True, "n": 1}),
    ]
    for state in states:
        for _ in range(2):  # the second time from the caches
            assert json.loads(state.to_json()) == json.loads(_long_way(state))
            assert CallState.from_json(state.to_json()) == state


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=8),
       st.sampled_from(["/ivr/twilio/voice", "/ivr/twilio/gather?s=2", "/ivr/twilio/status?x=%20"]))
def test_signature_fast_path_matches_the_package(form: dict[str, str], path: str) -> None:
    guard = RequestGuard("secret-token", BASE)
    validator = RequestValidator("secret-token")
    try:
        signature = validator.compute_signature(BASE + path, form)
    except UnicodeEncodeError:  # lone surrogates: neither side can sign them
        return
    assert guard._signature(BASE + path, form).decode() == signature
    headers = {"X-Twilio-Signature": signature}
    assert guard.allows(path_qs=path, seen_url="", remote=None, headers=headers, params=form)
    forged = {**form, "ForgedFieldName": "1"}  # longer than any generated name
    assert not guard.allows(path_qs=path, seen_url="", remote=None, headers=headers, params=forged)


def test_signature_with_port_and_non_ascii_header() -> None:
    guard = RequestGuard("secret-token", BASE)
    validator = RequestValidator("secret-token")
    form = {"CallSid": "CA1", "From": "+79161234567"}
    with_port = validator.compute_signature(BASE + ":443/ivr/twilio/voice", form)
    assert guard.allows(path_qs="/ivr/twilio/voice", seen_url="", remote=None,
                        headers={"X-Twilio-Signature": with_port}, params=form)
    assert not guard.allows(path_qs="/ivr/twilio/voice", seen_url="", remote=None,
                            headers={"X-Twilio-Signature": "подпись"}, params=form)
