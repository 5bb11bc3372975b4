"""Topics and answers: action_classify_topic, action_kb_answer."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from rasa_sdk.events import EventType, SlotSet

from actions.base import CLASSIFY_TEXT_LIMIT, FrontOfficeAction, Reply, Turn
from handlers.classification.remote import classify_text
from handlers.dto import TopicChoice

log = logging.getLogger(__name__)

# Our NLU data names Rasa intents after our topic codes; an intent this sure is taken as the topic.
INTENT_AS_TOPIC_CONFIDENCE = 0.6
MAX_CHOICES = 3
# The classifier's best guesses plus "Other" from intake; "talk to a person" is always offered too.
MAX_BUTTONS = 5


def known_topic(turn: Turn) -> str | None:
    """The topic already decided in this conversation: the `topic` slot, else a confident Rasa intent."""
    topics = turn.ctx.config.topics
    slot = turn.slot("topic")
    if slot in topics:
        return slot
    intent, confidence = turn.intent
    if intent in topics and confidence >= INTENT_AS_TOPIC_CONFIDENCE:
        return intent
    return None


def choose_topic_buttons(turn: Turn, choices: Sequence[TopicChoice]) -> list[dict[str, str]]:
    topics = turn.ctx.config.topics
    shown = [c for c in choices if c.topic in topics][:MAX_BUTTONS]
    buttons = [
        {
            "title": topics[c.topic].title.get(turn.language),
            "payload": f'/choose_topic{{"topic":"{c.topic}"}}',
        }
        for c in shown
    ]
    human = "human" if "human" in topics else None
    if human and all(c.topic != human for c in shown):
        buttons.append(
            {
                "title": topics[human].title.get(turn.language),
                "payload": f'/choose_topic{{"topic":"{human}"}}',
            }
        )
    return buttons


class ActionClassifyTopic(FrontOfficeAction):
    """Sets `topic`, `topic_confidence` and `urgent`; asks "which of these?" when unsure. Silent when sure."""

    action_name = "action_classify_topic"

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        text = turn.text[:CLASSIFY_TEXT_LIMIT]
        if not text:
            reply.say("rasa_ticket_describe")
            return []
        topics = turn.ctx.config.topics
        classifier = turn.ctx.classifier
        result = None
        if classifier is not None:
            try:
                result = await classify_text(turn.ctx, text, k=MAX_CHOICES)
            except Exception:
                log.exception("classifier failed; falling back to Rasa's intent")
        if result is None:
            intent, confidence = turn.intent
            if intent in topics and confidence >= INTENT_AS_TOPIC_CONFIDENCE:
                return _topic_slots(intent, confidence, urgent=False)
            reply.say("rasa_choose_topic", buttons=choose_topic_buttons(turn, _all_topics(turn)))
            return [SlotSet("topic", None)]
        if result.rejected or result.topic not in topics:
            ranking = [
                TopicChoice(topic=item.topic, title=item.topic, confidence=float(item.confidence))
                for item in (result.ranking or ())
                if item.topic in topics and item.topic != turn.ctx.config.out_of_scope_topic
            ]
            reply.say("rasa_choose_topic", buttons=choose_topic_buttons(turn, ranking or _all_topics(turn)))
            return [SlotSet("topic", None), SlotSet("urgent", bool(result.urgent))]
        return _topic_slots(result.topic, float(result.confidence), urgent=bool(result.urgent))


def _all_topics(turn: Turn) -> list[TopicChoice]:
    config = turn.ctx.config
    return [
        TopicChoice(topic=code, title=topic.title.get(turn.language), confidence=0.0)
        for code, topic in config.topics.items()
        if code != config.out_of_scope_topic
    ][:MAX_CHOICES]


def _topic_slots(topic: str, confidence: float, *, urgent: bool) -> list[EventType]:
    return [
        SlotSet("topic", topic),
        SlotSet("topic_confidence", round(confidence, 3)),
        SlotSet("urgent", urgent),
    ]


class ActionKbAnswer(FrontOfficeAction):
    """Answers from the knowledge base; with no article (or no knowledge base), offers a ticket."""

    action_name = "action_kb_answer"

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        text = turn.text[:CLASSIFY_TEXT_LIMIT]
        offer = [{"title": reply.t("rasa_button_open_ticket"), "payload": "/open_ticket"}]
        knowledge = turn.ctx.extras.get("knowledge")
        answer = None
        if knowledge is not None and text:
            answer = await knowledge.search(text, turn.language, known_topic(turn))
        if answer is None:
            reply.say("rasa_kb_none", buttons=offer)
            return [SlotSet("kb_article_id", None)]
        reply.text(f"{answer.title}\n{answer.answer}")
        reply.say("rasa_kb_not_helpful", buttons=offer)
        return [SlotSet("kb_article_id", answer.article_id)]
