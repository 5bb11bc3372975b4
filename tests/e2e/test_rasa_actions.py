"""The nine shipped actions, called over HTTP with action-call JSON as Rasa sends it, on the demo data.

Channels: Rasa's Twilio voice channel (sender_id = caller's number), Rasa's Telegram channel (sender_id =
chat id) and the REST channel (sender_id chosen by whoever calls Rasa: never trusted as an identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from actions.catalog import ACTION_NAMES
from actions.server import setup
from handlers.dto import KnowledgeAnswer, ServiceUnavailable
from handlers.identification import identify_by_phone, link_telegram
from service.http import create_app
from storage.models import Notification, Ticket
from tests.fakes.rasa_payloads import action_call, deflated, slot_events, texts
from tests.helpers import http_client

IVANOV_PHONE = "+79161234567"  # account 200001, e-mail on file, no manager
ROMASHKA_PHONE = "+74951112233"  # account 100001, personal manager Анна Петрова
KUZNETSOVA_PHONE = "+79154567890"  # account 200004, neither e-mail nor Telegram


@pytest.fixture
async def rasa(demo_services):  # type: ignore[no-untyped-def]
    app = create_app(demo_services)
    setup(app, demo_services.ctx, demo_services.settings)
    async with http_client(app) as client:
        yield Rasa(client, demo_services)


@dataclass
class Rasa:
    client: Any
    services: Any

    async def call(self, action: str, text: str = "", **kwargs: Any) -> dict[str, Any]:
        resp = await self.client.post("/webhook", json=action_call(action, text, **kwargs))
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert set(body) == {"events", "responses"}
        return body

    async def voice(
        self, action: str, text: str = "", phone: str = IVANOV_PHONE, **kwargs: Any
    ) -> dict[str, Any]:
        """As Rasa's twilio_voice channel: the conversation id is the caller's number."""
        return await self.call(action, text, sender_id=phone, input_channel="twilio_voice", **kwargs)

    async def count(self, model: Any, *where: Any) -> int:
        async with self.services.ctx.uow() as uow:
            return await uow.session.scalar(select(func.count()).select_from(model).where(*where))


def t(rasa: Rasa, key: str, lang: str = "ru", **values: Any) -> str:
    return rasa.services.ctx.t(key, lang, **values)


async def test_actions_endpoint_lists_all_nine(rasa):
    resp = await rasa.client.get("/actions")
    assert resp.status == 200
    assert {item["name"] for item in await resp.json()} == set(ACTION_NAMES)
    assert len(ACTION_NAMES) == 9


# ------------------------------------------------------------------ identification


async def test_identify_by_account_and_pin_wipes_the_pin_and_remembers_the_client(rasa):
    body = await rasa.call(
        "action_identify_customer",
        "счёт 200001 пин 0001",
        intent="identify",
        slots={"account_number": "200001", "pin": "0001"},
        sender_id="web-1",
    )
    slots = slot_events(body)
    assert slots["pin"] is None and slots["customer_identified"] is True
    assert "Иванов Иван Иванович" in texts(body)[0]
    # Later turns of the same conversation need no slots: the server remembers, not the tracker.
    body = await rasa.call("action_check_balance", "баланс", intent="balance", sender_id="web-1")
    assert "200001" in texts(body)[0]
    # ...but another conversation is not identified by it.
    body = await rasa.call("action_check_balance", "баланс", intent="balance", sender_id="web-2")
    assert texts(body) == [t(rasa, "rasa_need_identification")]


async def test_wrong_pin_counts_attempts_then_locks(rasa):
    for left in (4, 3, 2, 1):
        body = await rasa.call(
            "action_identify_customer", "пин 9999", slots={"account_number": "200002", "pin": "9999"}
        )
        assert texts(body) == [t(rasa, "rasa_pin_wrong", attempts=left)]
        assert slot_events(body) == {"pin": None, "customer_identified": False}
    body = await rasa.call(
        "action_identify_customer", "пин 9999", slots={"account_number": "200002", "pin": "9999"}
    )
    assert texts(body) == [t(rasa, "rasa_pin_locked")]
    # Locked: even the right PIN is refused now.
    body = await rasa.call(
        "action_identify_customer", "пин 0002", slots={"account_number": "200002", "pin": "0002"}
    )
    assert texts(body) == [t(rasa, "rasa_pin_locked")]


async def test_unknown_account_answers_like_a_wrong_pin(rasa):
    body = await rasa.call(
        "action_identify_customer",
        "",
        slots={"account_number": "999999", "pin": "0001"},
        metadata={"language": "en"},
    )
    assert texts(body) == [t(rasa, "rasa_pin_wrong", "en", attempts=4)]


async def test_caller_number_on_the_voice_channel_identifies(rasa):
    body = await rasa.voice("action_identify_customer", phone=ROMASHKA_PHONE)
    assert "ООО «Ромашка»" in texts(body)[0] and "Анна Петрова" in texts(body)[0]
    assert slot_events(body)["customer_identified"] is True
    assert slot_events(body)["account_number"] == "100001"


async def test_unknown_caller_is_asked_to_identify(rasa):
    body = await rasa.voice("action_identify_customer", phone="+79990001122")
    assert texts(body) == [t(rasa, "rasa_need_identification")]
    assert slot_events(body) == {"customer_identified": False}


async def test_a_phone_number_as_sender_on_an_untrusted_channel_identifies_nobody(rasa):
    # Anyone can post to Rasa's REST channel with any sender id.
    body = await rasa.call("action_check_balance", "баланс", sender_id=IVANOV_PHONE, input_channel="rest")
    assert texts(body) == [t(rasa, "rasa_need_identification")]


async def test_typed_phone_alone_identifies_nobody_but_with_the_pin_does(rasa):
    body = await rasa.call("action_identify_customer", "", slots={"phone": "8 916 123-45-67"}, sender_id="w")
    assert slot_events(body)["customer_identified"] is False
    body = await rasa.call(
        "action_identify_customer", "", slots={"phone": "8 916 123-45-67", "pin": "0001"}, sender_id="w"
    )
    assert slot_events(body)["customer_identified"] is True and slot_events(body)["pin"] is None


async def test_pin_without_account_for_an_unknown_phone_asks_for_the_account(rasa):
    body = await rasa.call("action_identify_customer", "", slots={"phone": "+79990001122", "pin": "0001"})
    assert texts(body) == [t(rasa, "rasa_need_account")]


async def test_linked_telegram_chat_identifies_on_rasa_telegram_channel(rasa):
    ctx = rasa.services.ctx
    ivanov = await identify_by_phone(ctx, IVANOV_PHONE)
    await link_telegram(ctx, ivanov.customer_id, 555001)
    body = await rasa.call("action_identify_customer", "/start", sender_id="555001", input_channel="telegram")
    assert slot_events(body)["customer_identified"] is True
    body = await rasa.call("action_identify_customer", "/start", sender_id="555002", input_channel="telegram")
    assert slot_events(body)["customer_identified"] is False
    # The same number from another channel is not a Telegram chat.
    body = await rasa.call("action_identify_customer", "/start", sender_id="555001", input_channel="rest")
    assert slot_events(body)["customer_identified"] is False


# ------------------------------------------------------------------ balance


async def test_balance_for_a_known_caller(rasa):
    body = await rasa.voice("action_check_balance", "какой у меня баланс", intent="balance")
    text = texts(body)[0]
    assert "200001" in text and "Домашний 100" in text
    assert slot_events(body)["account_number"] == "200001"
    assert "balance" in slot_events(body)


async def test_balance_in_english_and_never_of_someone_elses_account(rasa):
    body = await rasa.voice(
        "action_check_balance",
        "balance",
        intent="balance",
        metadata={"language": "en"},
        slots={"account_number": "100001"},
    )
    text = texts(body)[0]
    assert text.startswith("Balance of account 200001") and "100001" not in text


async def test_balance_unknown_customer(rasa):
    body = await rasa.call("action_check_balance", "баланс", intent="balance")
    assert texts(body) == [t(rasa, "rasa_need_identification")]
    assert slot_events(body) == {"customer_identified": False}


async def test_balance_when_billing_is_down(rasa):
    class DownBilling:
        async def account_balance(self, number: str) -> None:
            raise ServiceUnavailable("billing down")

    rasa.services.ctx.billing = DownBilling()
    body = await rasa.voice("action_check_balance", "баланс", intent="balance")
    assert texts(body) == [t(rasa, "billing_unavailable")]


# ------------------------------------------------------------------ documents


def _last_month() -> str:
    first = date.today().replace(day=1) - timedelta(days=1)
    return f"{first.year}-{first.month:02d}"


async def test_list_documents_from_slots_then_send_them_by_email(rasa):
    body = await rasa.voice(
        "action_list_documents",
        "счёт",
        intent="documents",
        slots={"document_kind": "invoice", "period": _last_month()},
    )
    slots = slot_events(body)
    assert len(slots["document_ids"]) == 1 and slots["document_kind"] == "invoice"
    assert "СЧ" in texts(body)[0]
    body = await rasa.voice(
        "action_send_documents",
        "отправьте",
        intent="send_documents",
        slots={"document_ids": slots["document_ids"]},
    )
    assert texts(body) == [t(rasa, "rasa_documents_sent_email", count=1)]
    assert slot_events(body)["document_ids"] is None
    assert (
        await rasa.count(
            Notification, Notification.kind == "document", Notification.recipient_kind == "email"
        )
        == 1
    )


async def test_list_documents_from_free_text(rasa):
    body = await rasa.voice(
        "action_list_documents", "пришлите детализацию за последние 3 месяца", intent="documents"
    )
    assert slot_events(body)["document_kind"] == "usage_report"
    assert 1 <= len(slot_events(body)["document_ids"]) <= 4


async def test_documents_missing_kind_or_period_are_asked_for(rasa):
    body = await rasa.voice("action_list_documents", "нужны документы", intent="documents")
    assert texts(body) == [t(rasa, "rasa_documents_ask_kind")]
    assert len(body["responses"][0]["buttons"]) == 5
    body = await rasa.voice("action_list_documents", "нужен счёт", intent="documents")
    assert texts(body) == [t(rasa, "rasa_documents_ask_period")]
    assert slot_events(body)["document_kind"] == "invoice" and "document_ids" not in slot_events(body)


async def test_documents_unknown_customer(rasa):
    body = await rasa.call("action_list_documents", "акт за октябрь", intent="documents")
    assert texts(body) == [t(rasa, "rasa_need_identification")]
    body = await rasa.call("action_send_documents", "отправьте", slots={"document_ids": [1, 2]})
    assert texts(body) == [t(rasa, "rasa_need_identification")]


async def test_send_someone_elses_document_is_refused(rasa):
    body = await rasa.voice(
        "action_list_documents",
        "счёт",
        phone=ROMASHKA_PHONE,
        slots={"document_kind": "invoice", "period": _last_month()},
    )
    romashka_ids = slot_events(body)["document_ids"]
    body = await rasa.voice("action_send_documents", "отправьте", slots={"document_ids": romashka_ids})
    assert texts(body) == [t(rasa, "rasa_not_found")]
    assert await rasa.count(Notification, Notification.kind == "document") == 0


async def test_send_documents_without_a_registered_contact(rasa):
    body = await rasa.voice(
        "action_send_documents",
        "отправьте счёт",
        phone=KUZNETSOVA_PHONE,
        slots={"document_kind": "invoice", "period": _last_month()},
    )
    assert texts(body) == [t(rasa, "rasa_documents_no_contact", phone=rasa.services.config.company.phone)]


async def test_send_documents_to_linked_telegram(rasa):
    ctx = rasa.services.ctx
    ivanov = await identify_by_phone(ctx, IVANOV_PHONE)
    await link_telegram(ctx, ivanov.customer_id, 555003)
    body = await rasa.call(
        "action_send_documents",
        "пришлите счёт",
        sender_id="555003",
        input_channel="telegram",
        slots={"document_kind": "invoice", "period": _last_month()},
    )
    assert texts(body) == [t(rasa, "rasa_documents_sent_telegram", count=1)]


# ------------------------------------------------------------------ tickets


async def test_open_ticket_for_known_caller_is_idempotent(rasa):
    kwargs = {"intent": "no_connection", "message_id": "msg-77"}
    body = await rasa.voice("action_open_ticket", "не работает интернет уже третий день", **kwargs)
    number = slot_events(body)["ticket_number"]
    assert number in texts(body)[0] and slot_events(body)["topic"] == "no_connection"
    assert await rasa.count(Ticket) == 1
    # Rasa retries the same call (timeout on its side): no second ticket.
    again = await rasa.voice("action_open_ticket", "не работает интернет уже третий день", **kwargs)
    assert slot_events(again)["ticket_number"] == number
    assert await rasa.count(Ticket) == 1


async def test_open_ticket_unknown_customer_needs_a_contact(rasa):
    body = await rasa.call("action_open_ticket", "хочу подключить интернет в офис", intent="new_connection")
    assert t(rasa, "rasa_ticket_need_contact") in texts(body)
    assert await rasa.count(Ticket) == 0
    body = await rasa.call(
        "action_open_ticket",
        "хочу подключить интернет в офис",
        intent="new_connection",
        slots={"phone": "+7 999 000-11-22"},
    )
    assert slot_events(body)["ticket_number"]
    async with rasa.services.ctx.uow() as uow:
        ticket = await uow.session.scalar(select(Ticket))
    assert ticket.customer_id is None and ticket.contact_phone == "+79990001122"


async def test_open_ticket_without_text_asks_for_a_description(rasa):
    body = await rasa.voice("action_open_ticket", "", intent="open_ticket")
    assert texts(body) == [t(rasa, "rasa_ticket_describe")]


async def test_open_ticket_free_text_goes_through_intake(rasa):
    body = await rasa.voice(
        "action_open_ticket",
        "мастер не пришёл, требую разобраться с этим безобразием",
        intent="nlu_fallback",
        confidence=0.3,
    )
    # Whatever intake decides (ticket, choice of topic...), the user gets an answer and nothing crashes.
    assert texts(body)


async def test_ticket_status(rasa):
    opened = await rasa.voice("action_open_ticket", "низкая скорость интернета", intent="slow_connection")
    number = slot_events(opened)["ticket_number"]
    body = await rasa.voice("action_ticket_status", "что с заявкой", slots={"ticket_number": number})
    assert number in texts(body)[0]
    assert t(rasa, "rasa_ticket_status_new") in texts(body)[0]
    body = await rasa.voice("action_ticket_status", "мои заявки")
    assert number in texts(body)[0]
    # Someone else asking for this number learns nothing.
    body = await rasa.voice(
        "action_ticket_status", "статус", phone=ROMASHKA_PHONE, slots={"ticket_number": number}
    )
    assert texts(body) == [t(rasa, "rasa_ticket_not_found", number=number)]
    body = await rasa.voice("action_ticket_status", "мои заявки", phone=ROMASHKA_PHONE)
    assert texts(body) == [t(rasa, "rasa_no_tickets")]


async def test_ticket_status_unknown_customer(rasa):
    body = await rasa.call("action_ticket_status", "статус заявки", slots={"ticket_number": "2026-000001"})
    assert texts(body) == [t(rasa, "rasa_need_identification")]


async def test_connect_manager_for_a_client_with_a_personal_manager(rasa):
    body = await rasa.voice(
        "action_connect_manager", "соедините с менеджером", phone=ROMASHKA_PHONE, intent="human"
    )
    number = slot_events(body)["ticket_number"]
    assert "Анна Петрова" in texts(body)[0] and number in texts(body)[0]


async def test_connect_manager_unknown_customer(rasa):
    body = await rasa.call("action_connect_manager", "позовите человека", intent="human")
    assert t(rasa, "rasa_callback_need_phone") in texts(body)
    assert await rasa.count(Ticket) == 0
    body = await rasa.call(
        "action_connect_manager", "перезвоните мне", intent="human", slots={"phone": "+79990001122"}
    )
    assert slot_events(body)["ticket_number"] in texts(body)[0]
    assert texts(body)[0] == t(rasa, "rasa_callback_operator", number=slot_events(body)["ticket_number"])


# ------------------------------------------------------------------ topics and knowledge


@dataclass
class Ranked:
    topic: str
    confidence: float


@dataclass
class Classified:
    topic: str
    confidence: float
    ranking: tuple[Ranked, ...]
    rejected: bool = False
    urgent: bool = False


class FakeClassifier:
    def __init__(self, result: Classified) -> None:
        self.result = result
        self.texts: list[str] = []

    def classify(self, text: str, k: int = 3) -> Classified:
        self.texts.append(text)
        return self.result


async def test_classify_topic_sets_slots(rasa):
    rasa.services.ctx.classifier = FakeClassifier(
        Classified("no_connection", 0.91, (Ranked("no_connection", 0.91),), urgent=True)
    )
    body = await rasa.call("action_classify_topic", "интернета нет срочно")
    assert slot_events(body) == {"topic": "no_connection", "topic_confidence": 0.91, "urgent": True}
    assert texts(body) == []


async def test_classify_topic_unsure_offers_choices(rasa):
    ranking = (Ranked("slow_connection", 0.4), Ranked("equipment", 0.35), Ranked("out_of_scope", 0.2))
    rasa.services.ctx.classifier = FakeClassifier(Classified("slow_connection", 0.4, ranking, rejected=True))
    body = await rasa.call(
        "action_classify_topic", "что-то с интернетом и роутером", metadata={"language": "en"}
    )
    assert texts(body) == [t(rasa, "rasa_choose_topic", "en")]
    payloads = [b["payload"] for b in body["responses"][0]["buttons"]]
    assert payloads[:2] == ['/choose_topic{"topic":"slow_connection"}', '/choose_topic{"topic":"equipment"}']
    assert slot_events(body)["topic"] is None


async def test_classify_topic_without_classifier_uses_rasa_intent(rasa):
    rasa.services.ctx.classifier = None
    body = await rasa.call(
        "action_classify_topic", "пропал интернет", intent="no_connection", confidence=0.88
    )
    assert slot_events(body)["topic"] == "no_connection"
    body = await rasa.call("action_classify_topic", "ээээ", intent="greet")
    assert texts(body) == [t(rasa, "rasa_choose_topic")] and slot_events(body) == {"topic": None}


async def test_classify_topic_missing_text(rasa):
    body = await rasa.call("action_classify_topic", "")
    assert texts(body) == [t(rasa, "rasa_ticket_describe")]


class FakeKnowledge:
    def __init__(self, answer: KnowledgeAnswer | None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str, str | None]] = []

    async def search(self, text: str, language: str, topic: str | None = None) -> KnowledgeAnswer | None:
        self.calls.append((text, language, topic))
        return self.answer


async def test_kb_answer_found(rasa):
    kb = FakeKnowledge(
        KnowledgeAnswer(article_id=7, title="Роутер", answer="Выключите и включите.", score=0.9)
    )
    rasa.services.ctx.extras["knowledge"] = kb
    body = await rasa.call("action_kb_answer", "роутер не работает", intent="equipment", confidence=0.9)
    assert texts(body)[0] == "Роутер\nВыключите и включите."
    assert slot_events(body) == {"kb_article_id": 7}
    assert kb.calls == [("роутер не работает", "ru", "equipment")]


async def test_kb_answer_none_or_no_knowledge_base_offers_a_ticket(rasa):
    rasa.services.ctx.extras["knowledge"] = FakeKnowledge(None)
    body = await rasa.call("action_kb_answer", "как настроить vpn", metadata={"language": "en"})
    assert texts(body) == [t(rasa, "rasa_kb_none", "en")]
    assert body["responses"][0]["buttons"][0]["payload"] == "/open_ticket"
    rasa.services.ctx.extras.pop("knowledge")
    body = await rasa.call("action_kb_answer", "как настроить vpn")
    assert texts(body) == [t(rasa, "rasa_kb_none")]


# ------------------------------------------------------------------ transport with the real actions


async def test_real_action_with_deflated_body_and_domain_round_trip(rasa):
    call = action_call(
        "action_check_balance",
        "баланс",
        sender_id=IVANOV_PHONE,
        input_channel="twilio_voice",
        with_domain=False,
        domain_digest="model-1",
    )
    resp = await rasa.client.post("/webhook", data=deflated(call), headers={"Content-Encoding": "deflate"})
    assert resp.status == 449
    call = action_call(
        "action_check_balance",
        "баланс",
        sender_id=IVANOV_PHONE,
        input_channel="twilio_voice",
        domain_digest="model-1",
    )
    resp = await rasa.client.post("/webhook", data=deflated(call), headers={"Content-Encoding": "deflate"})
    assert resp.status == 200
    assert "200001" in texts(await resp.json())[0]


async def test_database_down_is_a_polite_answer(rasa):
    await rasa.services.engine.dispose()

    def broken_uow():  # type: ignore[no-untyped-def]
        raise OSError("connection refused")

    # Down for writes and for the read-only look-ups alike.
    rasa.services.ctx.uow = rasa.services.ctx.reader = broken_uow
    body = await rasa.voice("action_check_balance", "баланс")
    assert texts(body) == [t(rasa, "rasa_service_unavailable", phone=rasa.services.config.company.phone)]


async def test_fifty_kilobyte_message_opens_one_ticket(rasa):
    text = "Не работает интернет. " + "Подробности: " * 4000
    assert len(text.encode()) > 50_000
    body = await rasa.voice("action_open_ticket", text, intent="no_connection")
    assert slot_events(body)["ticket_number"] in texts(body)[0]
    assert await rasa.count(Ticket) == 1


async def test_odd_tracker_values_are_tolerated(rasa):
    call = action_call(
        "action_check_balance",
        "баланс",
        sender_id=IVANOV_PHONE,
        input_channel="twilio_voice",
        slots={"account_number": ["200001", "x"], "language": 5, "pin": True},
    )
    call["tracker"]["events"].append("not an event")
    resp = await rasa.client.post("/webhook", json=call)
    assert resp.status == 200
    assert "200001" in texts(await resp.json())[0]


async def test_pin_identification_records_consent_as_the_prompt_says(rasa):
    ctx = rasa.services.ctx
    assert not (await identify_by_phone(ctx, KUZNETSOVA_PHONE)).has_consent
    body = await rasa.call("action_identify_customer", "", slots={"account_number": "200004", "pin": "0004"})
    assert slot_events(body)["customer_identified"] is True
    assert (await identify_by_phone(ctx, KUZNETSOVA_PHONE)).has_consent


async def test_a_new_rasa_session_or_restart_ends_the_identification(rasa):
    import time

    await rasa.call(
        "action_identify_customer", "", slots={"account_number": "200001", "pin": "0001"}, sender_id="s"
    )
    body = await rasa.call("action_check_balance", "баланс", sender_id="s")
    assert "200001" in texts(body)[0]
    # Rasa started a new session for this conversation after the identification.
    body = await rasa.call("action_check_balance", "баланс", sender_id="s", session_started_at=time.time())
    assert texts(body) == [t(rasa, "rasa_need_identification")]
    # ...and the identification stays forgotten afterwards.
    body = await rasa.call("action_check_balance", "баланс", sender_id="s")
    assert texts(body) == [t(rasa, "rasa_need_identification")]
    # A restart works the same way.
    await rasa.call(
        "action_identify_customer", "", slots={"account_number": "200001", "pin": "0001"}, sender_id="s"
    )
    restart = {"event": "restart", "timestamp": time.time() + 1}
    body = await rasa.call("action_check_balance", "баланс", sender_id="s", history=[restart])
    assert texts(body) == [t(rasa, "rasa_need_identification")]


async def test_identity_slots_are_set_only_when_they_change(rasa):
    body = await rasa.voice("action_check_balance", "баланс")
    assert slot_events(body)["customer_identified"] is True
    known = {"customer_identified": True, "customer_name": "Иванов Иван Иванович"}
    body = await rasa.voice("action_check_balance", "баланс", slots=known)
    assert "customer_identified" not in slot_events(body) and "customer_name" not in slot_events(body)


async def test_knowledge_answer_then_pass_to_a_specialist(rasa):
    from tests.fakes.rasa_payloads import user_event

    ctx = rasa.services.ctx
    ctx.classifier = FakeClassifier(Classified("equipment", 0.93, (Ranked("equipment", 0.93),)))
    article = KnowledgeAnswer(article_id=7, title="Роутер", answer="Выключите и включите.", score=0.9)
    ctx.extras["knowledge"] = FakeKnowledge(article)
    problem = "роутер мигает красным и ничего не работает"
    body = await rasa.voice("action_open_ticket", problem, intent="nlu_fallback", confidence=0.3)
    assert texts(body)[0] == "Роутер\nВыключите и включите."
    assert slot_events(body) == {
        "customer_identified": True,
        "customer_name": "Иванов Иван Иванович",
        "topic": "equipment",
        "kb_article_id": 7,
    }
    assert await rasa.count(Ticket) == 0
    # "Pass to a specialist": Rasa sends the button's payload as the message; the request is the problem.
    for slots in ({"topic": "equipment", "kb_article_id": 7}, {"kb_article_id": 7}):
        body = await rasa.voice(
            "action_open_ticket",
            "/open_ticket",
            intent="open_ticket",
            slots=slots,
            history=[user_event(problem, input_channel="twilio_voice")],
        )
        events = slot_events(body)
        assert events["topic"] == "equipment" and events["kb_article_id"] is None
        assert events["ticket_number"] in texts(body)[0]
    async with ctx.uow() as uow:
        subjects = list(await uow.session.scalars(select(Ticket.subject)))
    assert len(subjects) == 2 and all("роутер мигает" in subject for subject in subjects)


async def test_the_latest_message_wins_over_slots_left_from_an_earlier_request(rasa):
    first = date.today().replace(day=1)
    month_before_last = (first - timedelta(days=1)).replace(day=1) - timedelta(days=1)
    stale = {"document_kind": "act", "period": {"from": "2020-01-01", "to": "2020-02-01"}}
    body = await rasa.voice("action_list_documents", "счёт за прошлый месяц", slots=stale)
    events = slot_events(body)
    assert events["document_kind"] == "invoice" and len(events["document_ids"]) == 1
    assert events["period"]["from"] == (first - timedelta(days=1)).replace(day=1).isoformat()
    # Nothing said about the period: the slot's period is used.
    body = await rasa.voice(
        "action_list_documents",
        "а счёт?",
        slots={
            "period": {
                "from": month_before_last.replace(day=1).isoformat(),
                "to": month_before_last.isoformat(),
            }
        },
    )
    assert len(slot_events(body)["document_ids"]) == 1
