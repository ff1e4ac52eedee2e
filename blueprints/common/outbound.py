"""HTTP requests to addresses an account owner typed (the SIEM endpoint of SPEC F10),
guarded against server-side request forgery.

An owner's URL must not make this server reach what only it can reach: its loopback,
the private network it runs in, a cloud's metadata service. So the host's addresses are
resolved and each must be public, and the request then goes to the address that was
checked (TLS still verified against the host's name), so a DNS answer that changes
between the check and the connection (rebinding) reaches nothing new. Redirects are not
followed: a 3xx is an answer like any other. `OUTBOUND_ALLOW_PRIVATE` (development and
tests) lets loopback and private addresses and plain http through.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from flask import current_app

MAX_URL = 2048
CONNECT_SECONDS = 5.0
READ_SECONDS = 10.0
MAX_ANSWER = 300  # characters of a refusal's body kept to show the owner


class Refused(ValueError):
    """The URL may not be requested; the message says why, for the owner."""


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer (connection refused, timeout, TLS error)
    error: str | None  # None for a 2xx

    @property
    def ok(self) -> bool:
        return self.error is None


def _allow_private() -> bool:
    return bool(current_app.config.get("OUTBOUND_ALLOW_PRIVATE"))


def check_url(url: str) -> str:
    """`url` trimmed, if it is one we may post to (its form only: no DNS); else Refused."""
    url = url.strip()
    if not url:
        raise Refused("Enter the URL of your endpoint.")
    if len(url) > MAX_URL:
        raise Refused(f"The URL is longer than {MAX_URL} characters.")
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise Refused("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("That is not a valid URL.") from None
    schemes = ("https", "http") if _allow_private() else ("https",)
    if parts.scheme.lower() not in schemes:
        raise Refused("The URL must start with https://.")
    if not parts.hostname:
        raise Refused("The URL has no host name.")
    if parts.username or parts.password:
        raise Refused("Put credentials in the receiver's settings, not in the URL.")
    if port == 0:
        raise Refused("That is not a valid port.")
    return url


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> str:
    """The first address of `host`, every one of which must be public (else Refused)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Refused(f"The host name {host} does not resolve.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    if not addresses:
        raise Refused(f"The host name {host} does not resolve.")
    if not _allow_private() and not all(_public(a) for a in addresses):
        raise Refused(
            f"{host} is a private, loopback or reserved address: "
            "the endpoint must be reachable on the public internet."
        )
    return addresses[0]


def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to `url` (checked again, resolved and pinned); never raises for the
    network: a failure is an Answer with its error."""
    try:
        parts = urlsplit(check_url(url))
        https = parts.scheme.lower() == "https"
        port = parts.port or (443 if https else 80)
        address = resolve(parts.hostname, port)
    except Refused as refused:
        return Answer(None, str(refused))
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    timeout = urllib3.Timeout(connect=CONNECT_SECONDS, read=READ_SECONDS)
    options = {"timeout": timeout, "retries": False, "maxsize": 1}
    if https:
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            server_hostname=parts.hostname,
            assert_hostname=parts.hostname,
            cert_reqs="CERT_REQUIRED",
            **options,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **options)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        with pool:
            response = pool.urlopen(
                "POST",
                path,
                body=body,
                headers={"Host": host_header, **headers},
                redirect=False,
                preload_content=False,
            )
            try:
                text = response.read(MAX_ANSWER * 4, decode_content=False)
            finally:
                response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        return Answer(None, _network_error(exc, parts.hostname))
    if 200 <= response.status < 300:
        return Answer(response.status, None)
    said = text.decode("utf-8", "replace").strip()[:MAX_ANSWER]
    return Answer(response.status, f"HTTP {response.status}" + (f": {said}" if said else ""))


def _network_error(exc: Exception, host: str) -> str:
    """What went wrong, for the owner: refused, TLS, or no answer in time."""
    errors = urllib3.exceptions
    # NewConnectionError is a ConnectTimeoutError to urllib3: asked first.
    if isinstance(exc, errors.NewConnectionError):
        cause = exc.__cause__ or exc.__context__
        said = getattr(cause, "strerror", None) or str(exc).split("): ", 1)[-1]
        return f"Could not connect to {host}: {said}."[:500]
    if isinstance(exc, errors.SSLError):
        return f"TLS with {host} failed: {exc}"[:500]
    if isinstance(exc, errors.TimeoutError):
        return f"{host} did not answer in time."
    return f"Could not connect to {host}: {exc}"[:500]
