"""action_identify_customer: tell the user whether we know them, and how to identify themselves if not."""

from __future__ import annotations

from collections.abc import Iterable

from rasa_sdk.events import EventType, SlotSet

from actions.base import FrontOfficeAction, Reply, Turn
from actions.identity import explain_failure, resolve_client


class ActionIdentifyCustomer(FrontOfficeAction):
    action_name = "action_identify_customer"

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        identity = await resolve_client(turn)
        set_slots = {event.get("name") for event in turn.events if event.get("event") == "slot"}
        if identity.client is None:
            explain_failure(identity, reply)
            return [] if "customer_identified" in set_slots else [SlotSet("customer_identified", False)]
        client = identity.client
        if client.manager_name:
            reply.say("rasa_identified_with_manager", name=client.name, manager=client.manager_name)
        else:
            reply.say("rasa_identified", name=client.name)
        events: list[EventType] = []
        if "customer_identified" not in set_slots:
            events += [SlotSet("customer_identified", True), SlotSet("customer_name", client.name)]
        if len(client.account_numbers) == 1 and turn.slot("account_number") is None:
            events.append(SlotSet("account_number", client.account_numbers[0]))
        return events
