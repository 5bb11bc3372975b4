"""Documents by e-mail through the SMTP sender, against a minimal SMTP server that records what it got."""

from __future__ import annotations

import asyncio
import email
from email import policy

from storage.email_smtp import SmtpEmailSender
from tests.helpers import free_port


class RecordingSmtp:
    """Just enough SMTP (EHLO, MAIL, RCPT, DATA, QUIT) to receive messages in tests."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.port = free_port()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP\r\n")
        sender, rcpt = "", []
        while line := await reader.readline():
            command = line.decode().strip()
            upper = command.upper()
            if upper.startswith(("EHLO", "HELO")):
                writer.write(b"250-test\r\n250 8BITMIME\r\n")
            elif upper.startswith("MAIL FROM:"):
                sender = command[10:].strip("<> ")
                writer.write(b"250 ok\r\n")
            elif upper.startswith("RCPT TO:"):
                rcpt.append(command[8:].strip("<> "))
                writer.write(b"250 ok\r\n")
            elif upper == "DATA":
                writer.write(b"354 go\r\n")
                await writer.drain()
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                self.messages.append((sender, rcpt, data))
                writer.write(b"250 queued\r\n")
            elif upper == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


async def test_smtp_sender_with_pdf_attachment(tmp_path) -> None:
    server = RecordingSmtp()
    await server.start()
    try:
        attachment = tmp_path / "Счёт СЧ-1.pdf"
        attachment.write_bytes(b"%PDF-1.4 test")
        sender = SmtpEmailSender(f"smtp://127.0.0.1:{server.port}?from=docs@svyazservice.example")
        await sender.send("client@mail.example", "Документы", "Здравствуйте!", [str(attachment)])
    finally:
        await server.stop()
    (mail_from, rcpt, data), = server.messages
    assert mail_from == "docs@svyazservice.example" and rcpt == ["client@mail.example"]
    message = email.message_from_bytes(data, policy=policy.default)
    assert message["Subject"] == "Документы"
    parts = list(message.iter_attachments())
    assert parts[0].get_filename() == "Счёт СЧ-1.pdf" and parts[0].get_content() == b"%PDF-1.4 test"
    assert "Здравствуйте" in message.get_body(("plain",)).get_content()
