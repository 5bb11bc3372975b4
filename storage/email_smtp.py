"""EmailSender over SMTP: SMTP_URL = smtp://user:password@host:587?from=noreply@example.com
(STARTTLS when the server offers it on smtp://; smtps:// for implicit TLS on 465)."""

from __future__ import annotations

import asyncio
import mimetypes
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from handlers.email import EmailSender

MAX_ATTACHMENTS_BYTES = 20 * 1024 * 1024  # most mail servers refuse bigger messages


class SmtpEmailSender(EmailSender):
    def __init__(self, url: str, *, default_from: str = "noreply@localhost", timeout: float = 20.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("SMTP_URL must start with smtp:// or smtps://")
        self.host = parts.hostname or "localhost"
        self.implicit_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        query = parse_qs(parts.query)
        self.sender = query.get("from", [default_from])[0]
        self.starttls = query.get("starttls", ["auto"])[0]
        self.timeout = timeout

    def _message(self, to: str, subject: str, text: str, attachments: list[str]) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        total = 0
        for name in attachments:
            path = Path(name)
            data = path.read_bytes()
            total += len(data)
            if total > MAX_ATTACHMENTS_BYTES:
                raise ValueError("attachments too large for e-mail")
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            maintype, subtype = ctype.split("/", 1)
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
        return message

    def _send_sync(self, message: EmailMessage) -> None:
        if self.implicit_tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                   context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            client.ehlo()
            if not self.implicit_tls and self.starttls != "0" and client.has_extn("starttls"):
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if self.user:
                client.login(self.user, self.password or "")
            client.send_message(message)

    async def send(self, to: str, subject: str, text: str, attachments: list[str]) -> None:
        message = await asyncio.to_thread(self._message, to, subject, text, attachments)
        await asyncio.to_thread(self._send_sync, message)
