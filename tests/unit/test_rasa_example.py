"""The example Rasa project (examples/rasa) stays consistent with the action server and our topics.

Rasa itself is not installed here (it is a separate, heavy service), so this checks what `rasa data
validate` would: every action, slot, intent and button payload the actions use exists in the domain.
"""

import re
from pathlib import Path

import yaml

from actions.catalog import ACTION_NAMES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rasa"
SOURCES = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "actions").glob("*.py"))


def _yaml(name: str) -> dict:
    return yaml.safe_load((EXAMPLE / name).read_text(encoding="utf-8"))


def test_domain_declares_exactly_our_actions():
    assert set(_yaml("domain.yml")["actions"]) == set(ACTION_NAMES)


def test_every_slot_the_actions_read_or_set_is_declared():
    used = set(re.findall(r'SlotSet\("([a-z_]+)"', SOURCES))
    used |= set(re.findall(r'(?:raw_)?slot\("([a-z_]+)"\)', SOURCES))
    used |= set(re.findall(r'"(customer_identified|customer_name)"', SOURCES))
    assert {"phone", "account_number", "pin", "document_kind", "period", "ticket_number"} <= used
    assert used - set(_yaml("domain.yml")["slots"]) == set()


def test_topic_intents_are_our_topics(business_config):
    intents = set(_yaml("domain.yml")["intents"])
    assert set(business_config.topics) <= intents


def test_intents_of_rules_nlu_and_buttons_are_in_the_domain():
    intents = set(_yaml("domain.yml")["intents"])
    rule_intents = {
        step["intent"]
        for rule in _yaml("data/rules.yml")["rules"]
        for step in rule["steps"]
        if "intent" in step
    } - {"nlu_fallback"}
    nlu_intents = {item["intent"] for item in _yaml("data/nlu.yml")["nlu"] if "intent" in item}
    button_intents = set(re.findall(r"""["']payload["']:\s*f?["']/([a-z_]+)""", SOURCES))
    assert button_intents and rule_intents and nlu_intents
    assert (rule_intents | nlu_intents | button_intents) - intents == set()
    assert intents - nlu_intents == set(), "every intent needs examples"


def test_rule_actions_exist():
    domain = _yaml("domain.yml")
    known = set(domain["actions"]) | set(domain["responses"])
    used = {
        step["action"]
        for rule in _yaml("data/rules.yml")["rules"]
        for step in rule["steps"]
        if "action" in step
    }
    assert used - known == set()


def test_endpoint_points_at_our_webhook():
    assert _yaml("endpoints.yml")["action_endpoint"]["url"].endswith(":8080/webhook")
