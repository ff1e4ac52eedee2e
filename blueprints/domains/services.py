"""Domains (SPEC F2): normalise, add, verify through DNS, remove.

Plain functions of an explicit session and account, which they flush and never commit
(the caller does); the DNS lookup goes through dnspython with the configured name
servers and a bounded lifetime.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import dns.exception
import dns.nameserver
import dns.resolver
import idna
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError

from blueprints.common import audit
from models import Account, Domain, Membership, User

RECORD_PREFIX = "_identity-verification"
VALUE_PREFIX = "identity-verification="
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

# Failure reasons as stored, and how the page says them.
REASONS = {
    "no_such_domain": "No such domain: DNS says the domain does not exist.",
    "record_missing": "No TXT record found at the record name yet.",
    "value_mismatch": "A TXT record is there, but its value is not the one shown.",
    "timeout": "The DNS lookup timed out. Try again in a moment.",
    "dns_error": "The DNS servers returned an error. Try again in a moment.",
    "claimed_elsewhere": "This domain is verified by another account.",
}
# Answers that prove the record is gone, as opposed to a lookup that could not finish.
DEFINITE = {"no_such_domain", "record_missing", "value_mismatch"}


class DomainError(ValueError):
    """A domain name the user typed that we can't accept; the message is for the form."""


def normalise(raw: str) -> str:
    """The IDNA (xn--), lower-case form of a typed domain name, or DomainError."""
    # One trailing dot is the fully-qualified spelling; "example.com.." is a typo.
    text = (raw or "").strip().lower().removesuffix(".")
    if not text:
        raise DomainError("Enter a domain name, like example.com.")
    if any(c in text for c in "/:@ \t"):
        raise DomainError(
            "Enter just the domain name, like example.com, without http:// or a path."
        )
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise DomainError(f"{raw.strip()} isn't a valid domain name.") from None
    labels = ascii_name.split(".")
    if (
        len(ascii_name) > 253
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise DomainError(f"{raw.strip()} isn't a valid domain name.")
    return ascii_name


def email_domain(email: str) -> str:
    """The domain of an email address as domains are stored: IDNA (xn--), lower case."""
    return _stored_form(email.strip().lower().rpartition("@")[2])


@lru_cache(maxsize=4096)
def _stored_form(domain: str) -> str:
    # Cached: an IdP provisions thousands of people from a handful of domains, and the
    # IDNA encoding is the slowest step of matching one (SCIM create path).
    try:
        return normalise(domain)
    except DomainError:
        return domain


def display_name(name: str) -> str:
    """The Unicode form for people (xn--bcher-kva.example → bücher.example)."""
    try:
        return idna.decode(name)
    except (idna.IDNAError, UnicodeError):
        return name


def record_name(domain: Domain) -> str:
    return f"{RECORD_PREFIX}.{domain.name}"


def record_value(domain: Domain) -> str:
    return f"{VALUE_PREFIX}{domain.token}"


def list_domains(session, account_id: int) -> list[Domain]:
    return list(
        session.scalars(select(Domain).where(Domain.account_id == account_id).order_by(Domain.name))
    )


def get_domain(session, account_id: int, domain_id: int) -> Domain | None:
    """A domain of this account only (tenant isolation)."""
    return session.scalar(
        select(Domain).where(Domain.id == domain_id, Domain.account_id == account_id)
    )


def has_verified_domain(session, account_id: int) -> bool:
    """Whether the account has at least one verified domain (SSO and SCIM need one)."""
    return bool(
        session.scalar(
            select(exists().where(Domain.account_id == account_id, Domain.status == "verified"))
        )
    )


def _verified_elsewhere(session, name: str, account_id: int) -> bool:
    return (
        session.scalar(
            select(Domain.id).where(
                Domain.name == name, Domain.status == "verified", Domain.account_id != account_id
            )
        )
        is not None
    )


def add_domain(session, account_id: int, raw: str, actor_id: int, now: datetime) -> Domain:
    """Add a pending domain; DomainError for bad names, duplicates, or another's domain."""
    name = normalise(raw)
    shown = display_name(name)
    if session.scalar(
        select(Domain.id).where(Domain.account_id == account_id, Domain.name == name)
    ):
        raise DomainError(f"{shown} is already on your list.")
    if _verified_elsewhere(session, name, account_id):
        raise DomainError(f"{shown} is verified by another account.")
    domain = Domain(
        account_id=account_id,
        name=name,
        token=secrets.token_urlsafe(24),
        status="pending",
        created_at=now,
    )
    session.add(domain)
    audit.record(
        session, "domain.added", account_id=account_id, actor_user_id=actor_id, target=name
    )
    try:
        session.flush()
    except IntegrityError:  # the same name added twice at once
        session.rollback()  # a failed flush spoils the transaction (nothing else in it yet)
        raise DomainError(f"{shown} is already on your list.") from None
    return domain


@dataclass
class Lookup:
    ok: bool
    reason: str | None = None


def _resolver(nameservers: list[str], timeout: float) -> dns.resolver.Resolver:
    if not nameservers:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        servers = []
        for entry in nameservers:
            host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            servers.append(dns.nameserver.Do53Nameserver(host, int(port or 53)))
        resolver.nameservers = servers
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


def lookup_txt(name: str, expected: str, nameservers: list[str], timeout: float) -> Lookup:
    """Look for TXT `expected` at `name`; says why not: no such domain, missing, mismatch,
    timeout or DNS error. The lookup never takes longer than about `timeout` seconds."""
    resolver = _resolver(nameservers, timeout)
    try:
        answer = resolver.resolve(name, "TXT")
    except dns.resolver.NXDOMAIN:
        # The record name does not exist; tell a missing record from a missing domain.
        parent = name.split(".", 1)[1]
        try:
            resolver.resolve(parent, "SOA")
        except dns.resolver.NXDOMAIN:
            return Lookup(False, "no_such_domain")
        except dns.exception.Timeout:
            return Lookup(False, "timeout")
        except dns.exception.DNSException:
            pass  # the parent exists (NoAnswer) or can't be told: the record is what's missing
        return Lookup(False, "record_missing")
    except dns.resolver.NoAnswer:
        return Lookup(False, "record_missing")
    except dns.exception.Timeout:
        return Lookup(False, "timeout")
    except dns.exception.DNSException:
        return Lookup(False, "dns_error")
    values = {b"".join(rdata.strings).decode("utf-8", "replace").strip() for rdata in answer}
    return Lookup(True) if expected in values else Lookup(False, "value_mismatch")


def verify_domain(
    session,
    domain: Domain,
    nameservers: list[str],
    timeout: float,
    actor_id: int | None,
    now: datetime,
) -> Domain:
    """Look the TXT record up and mark the domain verified or failed (with the reason)."""
    if _verified_elsewhere(session, domain.name, domain.account_id):
        result = Lookup(False, "claimed_elsewhere")
    else:
        result = lookup_txt(record_name(domain), record_value(domain), nameservers, timeout)
    domain.checked_at = now
    if result.ok:
        domain.status, domain.failure_reason = "verified", None
        domain.verified_at, domain.lost_since = now, None
    elif domain.status == "verified":
        # A failed check of a verified domain (the owner re-checking a lost record) shows
        # why but keeps it verified: the daily re-check's grace period decides when a
        # missing record ends verification, and a DNS hiccup never does.
        domain.failure_reason = result.reason
    else:
        domain.status, domain.failure_reason = "failed", result.reason
    audit.record(
        session,
        "domain.verified" if result.ok else "domain.verify_failed",
        account_id=domain.account_id,
        actor_user_id=actor_id,
        target=domain.name,
        detail=None if result.ok else {"reason": result.reason},
    )
    try:
        session.flush()
    except IntegrityError:  # another account verified the same name at the same moment
        session.rollback()  # a failed flush spoils the transaction (nothing else in it yet)
        domain.status, domain.failure_reason, domain.verified_at = (
            "failed",
            "claimed_elsewhere",
            None,
        )
        audit.record(
            session,
            "domain.verify_failed",
            account_id=domain.account_id,
            actor_user_id=actor_id,
            target=domain.name,
            detail={"reason": "claimed_elsewhere"},
        )
    return domain


# Domain controls (SPEC F13): the switches of a verified domain, their audit actions,
# and the sentence the page shows beside each.
CONTROLS = {
    "capture": ("capture", "domain.capture_changed", "Domain capture"),
    "lock": ("locked", "domain.lock_changed", "Domain lock"),
}


def set_control(
    session,
    domain: Domain,
    control: str,
    on: bool,
    actor_id: int,
    remote_addr: str | None = None,
) -> bool:
    """Turn a verified domain's capture or lock on or off (the caller has re-checked the
    passphrase); audited. Returns whether it changed; DomainError for a domain that is not
    verified (the switches belong to verified domains only)."""
    column, action, _label = CONTROLS[control]
    if domain.status != "verified":
        raise DomainError(f"Verify {display_name(domain.name)} first.")
    if getattr(domain, column) == on:
        return False
    setattr(domain, column, on)
    audit.record(
        session,
        action,
        account_id=domain.account_id,
        actor_user_id=actor_id,
        target=domain.name,
        detail={"on": on},
        remote_addr=remote_addr,
    )
    return True


OUTSIDE_SHOWN = 50


def outside_memberships(
    session, domain: Domain, limit: int = OUTSIDE_SHOWN
) -> tuple[int, list[tuple[str, str]]]:
    """A locked domain's people who are members of other accounts (SPEC F13): how many
    memberships, and the first `limit` as (email, account name), in email order. Only
    what the owner needs to follow up: no other account's details."""

    outside = (
        select(User.email, Account.name)
        .join(Membership, Membership.user_id == User.id)
        .join(Account, Account.id == Membership.account_id)
        .where(User.email_domain == domain.name, Membership.account_id != domain.account_id)
    )
    count = session.scalar(select(func.count()).select_from(outside.subquery()))
    rows = session.execute(outside.order_by(User.email_key, Account.id).limit(limit)).all()
    return count, [(email, name) for email, name in rows]


def controls_off(domain: Domain) -> dict[str, bool]:
    """Switch capture and lock off (a verification that ends takes them with it); returns
    what was on, for the audit event and the owners' notice."""
    was = {"capture": domain.capture, "lock": domain.locked}
    domain.capture, domain.locked = False, False
    return {name: True for name, on in was.items() if on}


def remove_domain(session, domain: Domain, actor_id: int) -> None:
    """Delete the domain (the caller has re-checked the passphrase); its capture and lock
    go with the row."""
    audit.record(
        session,
        "domain.removed",
        account_id=domain.account_id,
        actor_user_id=actor_id,
        target=domain.name,
        detail=controls_off(domain) or None,
    )
    session.delete(domain)
