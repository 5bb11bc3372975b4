"""The nine front-office actions, built for one AppContext.

rasa-sdk's executor would instantiate Action classes itself, with no arguments; ours need the AppContext,
so the server registers instances built here (`ActionExecutor.register_action` accepts both).
"""

from __future__ import annotations

from rasa_sdk import Action

from actions.identify import ActionIdentifyCustomer
from actions.selfservice import ActionCheckBalance, ActionListDocuments, ActionSendDocuments
from actions.tickets import ActionConnectManager, ActionOpenTicket, ActionTicketStatus
from actions.topics import ActionClassifyTopic, ActionKbAnswer
from handlers.context import AppContext

ACTION_CLASSES = (
    ActionIdentifyCustomer,
    ActionCheckBalance,
    ActionListDocuments,
    ActionSendDocuments,
    ActionOpenTicket,
    ActionTicketStatus,
    ActionConnectManager,
    ActionClassifyTopic,
    ActionKbAnswer,
)
ACTION_NAMES = tuple(cls.action_name for cls in ACTION_CLASSES)


def build_actions(ctx: AppContext) -> list[Action]:
    return [cls(ctx) for cls in ACTION_CLASSES]
