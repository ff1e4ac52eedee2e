"""Helpers for tests that read what the real (aiosmtpd) SMTP server received."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from email.message import EmailMessage

from flask import Flask

LINK = re.compile(r"https?://\S+")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def point_mail_at(app: Flask, port: int) -> None:
    """Send the app's email to 127.0.0.1:`port` (Flask-Mail reads its config at init)."""
    from app import mail

    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port)
    mail.init_app(app)


def received(handler) -> list[EmailMessage]:
    """The messages the SMTP server accepted, parsed."""
    return [
        email.message_from_bytes(envelope.content, policy=email.policy.default)
        for envelope in handler.messages
    ]


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def links_in(text: str) -> list[str]:
    return LINK.findall(text)
