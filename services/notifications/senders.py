"""How a notification leaves the mesh: e-mail over SMTP to a configured relay, SMS through a provider port.

A sender raises `DeliveryFailed` (retry later) or `Undeliverable` (permanent, e.g. the relay
rejected the address with a 5xx); returning means the relay or provider accepted the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import logging
import os
import smtplib
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from services.kit.config import Settings

log = logging.getLogger("agora.notifications.senders")


class DeliveryFailed(Exception):
    """This attempt failed; another may succeed."""


class Undeliverable(Exception):
    """No attempt can succeed (a permanent rejection)."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where e-mail goes: AGORA_SMTP_HOST/PORT/FROM/TIMEOUT, read by the kit's Settings."""

    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "Agora <no-reply@agora.local>"
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpSettings:
        return cls(host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from,
                   timeout=settings.smtp_timeout)


class EmailSender:
    """smtplib in a worker thread; the notification id is the Message-ID, so a receiver can tell a
    resend (after a crash between the relay's acceptance and our record of it) from a new message."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def _send(self, message: EmailMessage) -> None:
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(500 <= c < 600 for c in codes):
                raise Undeliverable(f"the relay refused the recipient: {exc.recipients}") from None
            raise DeliveryFailed(f"the relay refused the recipient for now: {exc.recipients}") from None
        except smtplib.SMTPResponseException as exc:
            text = (exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes)
                    else str(exc.smtp_error))
            if 500 <= exc.smtp_code < 600 and exc.smtp_code not in (502, 503, 504):
                raise Undeliverable(f"SMTP {exc.smtp_code} {text}") from None
            raise DeliveryFailed(f"SMTP {exc.smtp_code} {text}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(f"SMTP relay {s.host}:{s.port} unreachable: {exc}") from None

    async def send(self, notification_id: str, recipient: str, subject: str, body: str) -> None:
        await asyncio.to_thread(self._send,
                                compose(self.settings.sender, notification_id, recipient, subject, body))


def compose(sender: str, notification_id: str, recipient: str, subject: str, body: str) -> EmailMessage:
    """The e-mail of one notification; its id is the Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{notification_id}@agora.local>"
    message.set_content(body)
    return message


class MaildirSender:
    """The embedded run's mail sink: each e-mail is one file of a maildir (tmp/ then renamed into
    cur/, the layout every mail reader knows), so the flow completes without an SMTP relay and a
    person can read what was sent with `agora mail list|show`. The file is named by the notification
    id, so a resend of the same notification replaces its file instead of adding a copy."""

    def __init__(self, directory: Path, sender: str = SmtpSettings.sender) -> None:
        self.directory, self.sender = Path(directory), sender

    def _send(self, message: EmailMessage, notification_id: str) -> None:
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in notification_id)
        try:
            for sub in ("tmp", "new", "cur"):
                (self.directory / sub).mkdir(parents=True, exist_ok=True)
            staged = self.directory / "tmp" / name
            staged.write_bytes(message.as_bytes(policy=policy.SMTP))
            os.replace(staged, self.directory / "cur" / f"{name}:2,")
        except OSError as exc:
            raise DeliveryFailed(f"mail sink {self.directory}: {exc.strerror or exc}") from None

    async def send(self, notification_id: str, recipient: str, subject: str, body: str) -> None:
        message = compose(self.sender, notification_id, recipient, subject, body)
        await asyncio.to_thread(self._send, message, notification_id)


def read_mail(directory: Path) -> list[tuple[str, EmailMessage]]:
    """Every e-mail in the sink as (notification id, message), oldest first."""
    files = [f for sub in ("new", "cur") if (Path(directory) / sub).is_dir()
             for f in (Path(directory) / sub).iterdir() if f.is_file()]
    found = []
    for path in files:
        with contextlib.suppress(FileNotFoundError):  # replaced by a resend while we read
            stamp = path.stat().st_mtime_ns
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            nid = str(message["Message-ID"] or "").strip("<>").removesuffix("@agora.local")
            found.append((stamp, path.name, nid, message))
    found.sort(key=lambda item: item[:2])
    return [(nid, message) for _, _, nid, message in found]


class SmsProvider(Protocol):
    name: str

    async def send(self, notification_id: str, phone: str, body: str) -> None:
        """Hand one SMS to the provider (raises DeliveryFailed / Undeliverable)."""


@dataclass
class LoggingSmsProvider:
    """The built-in SMS provider: logs each message and keeps it (tests read `sent`)."""

    name: str = "log"
    sent: list[tuple[str, str, str]] = field(default_factory=list)

    async def send(self, notification_id: str, phone: str, body: str) -> None:
        if not phone.startswith("+") or not phone[1:].isdigit():
            raise Undeliverable(f"{phone!r} is not an E.164 phone number")
        self.sent.append((notification_id, phone, body))
        log.info("SMS to %s: %s", phone, body)
