"""Streaming an account's audit events to its SIEM (SPEC F10): the endpoint and signing
secret an owner configures, what each delivery carries, and the test delivery.

A delivery is one event as JSON (the same record as a line of the JSON Lines export)
POSTed with three headers a receiver checks:
- `X-Event-Id`: the event's id, the same on every retry: the receiver de-duplicates on it;
- `X-Timestamp`: when this attempt was signed, in seconds since the epoch: the receiver
  refuses an old one (a replay);
- `X-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with the stream's secret, of
  the timestamp, a ".", and the body's bytes.

The queue and its job are in blueprints/audit/jobs.py. Services never commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import func, select

from blueprints.common import audit, crypto, outbound
from models import AuditDelivery, AuditStream

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix saying what the secret is for)
USER_AGENT = "identity-audit-stream/1"


def get(session, account_id: int) -> AuditStream | None:
    return session.scalar(select(AuditStream).where(AuditStream.account_id == account_id))


def queued(session, stream: AuditStream) -> int:
    """Events waiting to be sent."""
    return session.scalar(select(func.count()).where(AuditDelivery.stream_id == stream.id))


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret(stream: AuditStream) -> str:
    return crypto.decrypt(stream.secret_encrypted)


def where(url: str) -> str:
    """The endpoint as the audit log names it: scheme, host and path, never the query
    (a receiver's key may ride in it)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"[:400]


def configure(
    session, account_id: int, user, url: str, now: datetime
) -> tuple[AuditStream, str | None]:
    """Stream the account's events to `url` (checked: outbound.Refused says why not).
    A new stream gets a secret, returned to be shown once; changing the URL of a stream
    keeps its secret (None returned) and its queue."""
    url = outbound.check_url(url)
    parts = urlsplit(url)
    outbound.resolve(parts.hostname, parts.port or 443)
    stream = get(session, account_id)
    issued = None
    if stream is None:
        issued = new_secret()
        stream = AuditStream(
            account_id=account_id,
            endpoint_url=url,
            secret_encrypted=crypto.encrypt(issued),
            enabled=True,
            created_by_user_id=user.id,
            created_at=now,
            updated_at=now,
        )
        session.add(stream)
    else:
        stream.endpoint_url = url
        stream.updated_at = now
        stream.failures = 0
        stream.next_attempt_at = None  # the new address is tried at once
    # The stream exists before its event is written, so the event is its first delivery.
    session.flush()
    _audit(session, stream, user, "audit.stream_configured" if issued else "audit.stream_changed")
    return stream, issued


def _audit(session, stream: AuditStream, user, action: str, detail: dict | None = None) -> None:
    audit.record(
        session,
        action,
        account_id=stream.account_id,
        actor_user_id=user.id,
        target=where(stream.endpoint_url),
        detail=detail,
    )


def reveal(session, stream: AuditStream, user) -> str:
    """The secret, shown again after the passphrase (audited)."""
    _audit(session, stream, user, "audit.stream_secret_revealed")
    return secret(stream)


def remove(session, stream: AuditStream, user) -> None:
    """Stop streaming: the endpoint, its secret and the events not yet sent are dropped
    (the events stay in the audit log)."""
    _audit(session, stream, user, "audit.stream_removed")
    session.delete(stream)


def body(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def signature(key: str, timestamp: int, content: bytes) -> str:
    mac = hmac.new(key.encode(), str(timestamp).encode() + b"." + content, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send(stream: AuditStream, key: str, event_id: str, record: dict) -> outbound.Answer:
    """POST one record, signed now."""
    content = body(record)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Event-Id": event_id,
        "X-Timestamp": str(timestamp),
        "X-Signature": signature(key, timestamp, content),
    }
    return outbound.post(stream.endpoint_url, content, headers)


def note(stream: AuditStream, answer: outbound.Answer, now: datetime) -> None:
    """What the page shows of the last attempt."""
    stream.last_attempt_at = now
    stream.last_status = answer.status
    stream.last_error = None if answer.ok else (answer.error or "")[:500]
    if answer.ok:
        stream.last_success_at = now


def send_test(session, stream: AuditStream, user, now: datetime) -> outbound.Answer:
    """Send a test event at once (not through the queue, so it doesn't wait behind a
    backlog), and note its outcome for the page."""
    event_id = f"test-{uuid.uuid4()}"
    record = {
        "id": event_id,
        "time": now.isoformat().replace("+00:00", "Z"),
        "actor": user.email,
        "action": "audit.stream_test",
        "resource": where(stream.endpoint_url),
        "address": None,
        "detail": {"message": "A test event from your audit log stream."},
    }
    answer = send(stream, secret(stream), event_id, record)
    note(stream, answer, now)
    detail = {"status": answer.status, "error": answer.error}
    _audit(session, stream, user, "audit.stream_tested", detail)
    return answer
