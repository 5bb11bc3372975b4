"""action_identify_customer: tell the user whether we know them, and how to identify themselves if not."""

from __future__ import annotations

from collections.abc import Iterable

from rasa_sdk.events import EventType, SlotSet

from actions.base import FrontOfficeAction, Reply, Turn
from actions.identity import explain_failure, identity_slots, resolve_client


class ActionIdentifyCustomer(FrontOfficeAction):
    action_name = "action_identify_customer"

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        identity = await resolve_client(turn)
        if identity.client is None:
            explain_failure(identity, reply)
            return identity_slots(turn, None)
        client = identity.client
        if client.manager_name:
            reply.say("rasa_identified_with_manager", name=client.name, manager=client.manager_name)
        else:
            reply.say("rasa_identified", name=client.name)
        events: list[EventType] = identity_slots(turn, client)
        if len(client.account_numbers) == 1 and turn.slot("account_number") is None:
            events.append(SlotSet("account_number", client.account_numbers[0]))
        return events
