"""E-mail port: how documents and notices reach a client who is not on Telegram.

The notification dispatcher calls `ctx.extras["email"].send(to, subject, text, attachments)`;
`storage/email_smtp.py` implements it over SMTP when SMTP_URL is set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class EmailSender(ABC):
    @abstractmethod
    async def send(self, to: str, subject: str, text: str, attachments: list[str]) -> None:
        """Send one message; `attachments` are paths of files on our side. Raises on failure (retried)."""
