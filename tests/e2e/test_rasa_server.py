"""The action server's transport: rasa-sdk's executor behind our aiohttp app, with rasa-sdk's status codes.

Probe actions (not the shipped ones) isolate the plumbing: routing, compression, domain handling, errors,
token. The shipped actions are exercised in test_rasa_actions.py.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from pydantic import SecretStr
from rasa_sdk import Action
from rasa_sdk.events import SlotSet
from rasa_sdk.interfaces import ActionExecutionRejection

from actions.base import FrontOfficeAction
from actions.server import MAX_ACTION_CALL_BYTES, setup
from service.http import create_app
from tests.fakes.rasa_payloads import action_call, deflated, slot_events, texts
from tests.helpers import http_client


class EchoAction(FrontOfficeAction):
    action_name = "action_probe_echo"

    async def act(self, turn, reply):  # type: ignore[no-untyped-def]
        reply.text(f"{turn.language}|{turn.channel}|{turn.text}|{turn.slot('account_number')}")
        return [SlotSet("probe", turn.message_key)]


class RejectingAction(Action):
    def name(self) -> str:
        return "action_probe_reject"

    async def run(self, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        raise ActionExecutionRejection(self.name(), "not now")


class CrashingAction(Action):
    def name(self) -> str:
        return "action_probe_crash"

    async def run(self, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret detail 0001")


class FailingUseCaseAction(FrontOfficeAction):
    action_name = "action_probe_bug"

    async def act(self, turn, reply):  # type: ignore[no-untyped-def]
        raise KeyError("bug inside an action")


def _probes(ctx: Any) -> list[Action]:
    return [EchoAction(ctx), RejectingAction(), CrashingAction(), FailingUseCaseAction(ctx)]


async def _client(services, token: str | None = None):  # type: ignore[no-untyped-def]
    settings = services.settings
    if token is not None:
        settings = settings.model_copy(update={"rasa_actions_token": SecretStr(token)})
    app = create_app(services)
    lines = setup(app, services.ctx, settings, actions=_probes(services.ctx))
    assert lines and "/webhook" in lines[0]
    return http_client(app)


async def test_runs_an_action_and_returns_events_and_responses(services):
    async with await _client(services) as client:
        call = action_call(
            "action_probe_echo",
            "hello",
            slots={"account_number": "200001"},
            message_id="m1",
            metadata={"language": "en-GB"},
            input_channel="telegram",
            sender_id="42",
        )
        resp = await client.post("/webhook", json=call)
        assert resp.status == 200
        body = await resp.json()
    assert texts(body) == ["en|telegram|hello|200001"]
    assert slot_events(body) == {"probe": "rasa:42:m1"}


async def test_language_defaults_to_russian_and_follows_the_slot(services):
    async with await _client(services) as client:
        resp = await client.post("/webhook", json=action_call("action_probe_echo", "привет"))
        assert texts(await resp.json())[0].startswith("ru|rest|привет|")
        resp = await client.post(
            "/webhook", json=action_call("action_probe_echo", "hi", slots={"language": "en"})
        )
        assert texts(await resp.json())[0].startswith("en|")


async def test_lists_registered_actions(services):
    async with await _client(services) as client:
        resp = await client.get("/actions")
        assert resp.status == 200
        names = {item["name"] for item in await resp.json()}
    assert names == {"action_probe_echo", "action_probe_reject", "action_probe_crash", "action_probe_bug"}


async def test_unknown_action_is_404_with_rasa_sdk_body(services):
    async with await _client(services) as client:
        resp = await client.post("/webhook", json=action_call("action_does_not_exist", "hi"))
        assert resp.status == 404
        body = await resp.json()
    assert body == {
        "error": "No registered action found for name 'action_does_not_exist'.",
        "action_name": "action_does_not_exist",
    }


async def test_rejected_action_is_400(services):
    async with await _client(services) as client:
        resp = await client.post("/webhook", json=action_call("action_probe_reject", "hi"))
        assert resp.status == 400
        assert await resp.json() == {"error": "not now", "action_name": "action_probe_reject"}


async def test_crash_outside_an_action_is_500_without_details(services):
    async with await _client(services) as client:
        resp = await client.post(
            "/webhook", json=action_call("action_probe_crash", "hi", slots={"pin": "0001"})
        )
        assert resp.status == 500
        body = await resp.json()
    assert body["action_name"] == "action_probe_crash" and body["incident"]
    assert "secret detail" not in json.dumps(body) and "0001" not in json.dumps(body)


async def test_bug_inside_an_action_is_an_apology_not_a_traceback(services):
    async with await _client(services) as client:
        resp = await client.post(
            "/webhook", json=action_call("action_probe_bug", "hi", slots={"language": "en"})
        )
        assert resp.status == 200
        body = await resp.json()
    assert texts(body) == [services.ctx.t("error_apology", "en")]


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{not json", "not JSON"),
        (b"", "empty body"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({"sender_id": "x", "tracker": {}}).encode(), "'next_action' missing"),
        (json.dumps({"next_action": "action_probe_echo", "tracker": "x"}).encode(), "'tracker' missing"),
        (
            json.dumps(
                {"next_action": "action_probe_echo", "tracker": {"sender_id": "x", "events": {}}}
            ).encode(),
            "'tracker.events' must be a list",
        ),
        (b'{"next_action": "\xff\xfe"}', "not JSON"),
    ],
)
async def test_malformed_body_is_400_with_json_error(services, body, reason):
    async with await _client(services) as client:
        resp = await client.post("/webhook", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error.startswith("Invalid body request") and reason in error


async def test_deflate_and_gzip_bodies_are_accepted(services):
    call = action_call("action_probe_echo", "сжатый запрос")
    async with await _client(services) as client:
        resp = await client.post(
            "/webhook",
            data=deflated(call),
            headers={"Content-Encoding": "deflate", "Content-Type": "application/json"},
        )
        assert resp.status == 200
        assert texts(await resp.json())[0].startswith("ru|rest|сжатый запрос")
        resp = await client.post(
            "/webhook",
            data=gzip.compress(json.dumps(call).encode()),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert resp.status == 200


async def test_corrupt_compressed_body_is_400(services):
    async with await _client(services) as client:
        resp = await client.post(
            "/webhook",
            data=b"definitely not zlib",
            headers={"Content-Encoding": "deflate", "Content-Type": "application/json"},
        )
        assert resp.status == 400
        assert "Content-Encoding" in (await resp.json())["error"]


async def test_oversized_body_is_refused_even_when_compressed(services):
    huge = b'{"next_action": "action_probe_echo", "pad": "' + b"x" * (MAX_ACTION_CALL_BYTES + 10) + b'"}'
    async with await _client(services) as client:
        resp = await client.post(
            "/webhook",
            data=zlib.compress(huge),
            headers={"Content-Encoding": "deflate", "Content-Type": "application/json"},
        )
        assert resp.status == 413
        assert "error" in await resp.json()


async def test_missing_domain_is_449_until_rasa_resends_it(services):
    async with await _client(services) as client:
        bare = action_call("action_probe_echo", "hi", with_domain=False, domain_digest="digest-1")
        resp = await client.post("/webhook", json=bare)
        assert resp.status == 449
        body = await resp.json()
        assert body["action_name"] == "action_probe_echo" and "domain" in body["error"].lower()
        # Rasa retries with the domain; from then on the digest alone is enough.
        full = action_call("action_probe_echo", "hi", domain_digest="digest-1")
        assert (await client.post("/webhook", json=full)).status == 200
        assert (await client.post("/webhook", json=bare)).status == 200
        # A new model (new digest) without its domain: asked again.
        changed = action_call("action_probe_echo", "hi", with_domain=False, domain_digest="digest-2")
        assert (await client.post("/webhook", json=changed)).status == 449


async def test_token_required_when_configured(services):
    call = action_call("action_probe_echo", "hi")
    async with await _client(services, token="s3cret-token") as client:
        missing = await client.post("/webhook", json=call)
        wrong = await client.post("/webhook", json=call, headers={"Authorization": "Bearer nope"})
        listing = await client.get("/actions")
        assert (missing.status, wrong.status, listing.status) == (401, 401, 401)
        assert "error" in await missing.json()
        ok = await client.post("/webhook", json=call, headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status == 200
        # Rasa's endpoints.yml `token:` sends it as a query parameter.
        ok = await client.post("/webhook?token=s3cret-token", json=call)
        assert ok.status == 200
        ok = await client.get("/actions", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status == 200


async def test_numeric_sender_id_and_missing_tracker_sender_are_accepted(services):
    call = action_call("action_probe_echo", "hi", sender_id="7", message_id="m")
    call["tracker"]["sender_id"] = 7
    async with await _client(services) as client:
        resp = await client.post("/webhook", json=call)
        assert resp.status == 200
        assert slot_events(await resp.json()) == {"probe": "rasa:7:m"}
        del call["tracker"]["sender_id"]
        call["sender_id"] = "from-top-level"
        resp = await client.post("/webhook", json=call)
        assert slot_events(await resp.json()) == {"probe": "rasa:from-top-level:m"}
