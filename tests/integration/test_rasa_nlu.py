"""The optional Rasa NLU backend: asked first, mapped onto our topics, and never a single point of failure."""

import asyncio
import json
from types import SimpleNamespace

import pytest
from aiohttp import web

from handlers.classification.engine import Classification
from handlers.classification.remote import classify_text
from storage.rasa_nlu import RasaNluClassifier
from tests.helpers import free_port

TOPICS = ("balance", "documents", "no_connection", "out_of_scope")


@pytest.fixture
async def rasa_server():
    state = {"delay": 0.0, "status": 200, "body": None, "calls": 0}

    async def parse(request):
        state["calls"] += 1
        payload = await request.json()
        await asyncio.sleep(state["delay"])
        body = state["body"] or {
            "text": payload["text"],
            "intent": {"name": "no_connection", "confidence": 0.93},
            "intent_ranking": [{"name": "no_connection", "confidence": 0.93},
                               {"name": "greet", "confidence": 0.05}, {"name": "balance", "confidence": 0.02}],
        }
        return web.Response(status=state["status"], text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_post("/model/parse", parse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", state
    await runner.cleanup()


class _Builtin:
    def __init__(self):
        self.calls = 0

    def classify(self, text, k=3):
        self.calls += 1
        return Classification("balance", 0.8, (), False, False)


def ctx_with(remote):
    return SimpleNamespace(extras={"remote_nlu": remote} if remote else {}, classifier=_Builtin())


async def test_rasa_answer_is_mapped_onto_topics(rasa_server):
    url, _ = rasa_server
    rasa = RasaNluClassifier(url, TOPICS)
    try:
        result = await classify_text(ctx_with(rasa), "интернет не работает срочно")
        assert result.topic == "no_connection" and not result.rejected and result.urgent
        assert [s.topic for s in result.ranking] == ["no_connection", "balance"]  # foreign intents dropped
    finally:
        await rasa.close()


@pytest.mark.parametrize("intent", [{"name": "greet", "confidence": 0.99}, {"name": "nlu_fallback", "confidence": 0.7},
                                    {"name": "documents", "confidence": 0.2}])
async def test_unknown_fallback_or_weak_intents_are_unsure(rasa_server, intent):
    url, state = rasa_server
    state["body"] = {"intent": intent, "intent_ranking": [intent]}
    rasa = RasaNluClassifier(url, TOPICS)
    try:
        result = await classify_text(ctx_with(rasa), "hello")
        assert result.rejected and result.topic == "out_of_scope"
    finally:
        await rasa.close()


@pytest.mark.parametrize("fault", ["slow", "500", "garbage", "down"])
async def test_rasa_trouble_falls_back_to_the_builtin_engine_and_cools_off(rasa_server, fault):
    url, state = rasa_server
    if fault == "slow":
        state["delay"] = 2.0
    elif fault == "500":
        state["status"] = 500
    elif fault == "garbage":
        state["body"] = ["not", "a", "parse", "result"]
    if fault == "down":
        url = f"http://127.0.0.1:{free_port()}"
    rasa = RasaNluClassifier(url, TOPICS, timeout=0.3, cool_off=60)
    ctx = ctx_with(rasa)
    try:
        first = await classify_text(ctx, "сколько я должен")
        assert first.topic == "balance" and ctx.classifier.calls == 1
        calls = state["calls"]
        await classify_text(ctx, "ещё раз")
        if fault != "garbage":  # a failure makes us leave the server alone for a while
            assert state["calls"] == calls
    finally:
        await rasa.close()


async def test_without_rasa_the_builtin_engine_answers():
    ctx = ctx_with(None)
    assert (await classify_text(ctx, "x")).topic == "balance"
