"""A real DNS server for tests: dnslib's `DNSServer` on loopback with an editable zone.

The domains tests and the browser tests both use it, through the fixtures in
`tests/domains/conftest.py` and `tests/browser/conftest.py`.

- `Zone.add_domain(name)`: the name exists (answers NOERROR, and an SOA when asked for one).
- `Zone.add_txt(name, *records)`: TXT records at `name`; a record is a string, or a tuple
  of strings for one record made of several character-strings.
- `Zone.servfail(name)`: every question about `name` gets SERVFAIL.
- Anything else is NXDOMAIN, with the SOA of the nearest existing parent as authority.
- `Zone.on_query`: called with each question's name before it is answered (for races).

`SilentServer` is a UDP socket that reads questions and never answers: the timeout case.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from dnslib import QTYPE, RCODE, RR, SOA, TXT, DNSRecord
from dnslib.server import DNSLogger, DNSServer

TTL = 60


def _key(name) -> str:
    return str(name).rstrip(".").lower()


class Zone:
    """The names the test server knows; a dnslib resolver (`resolve(request, handler)`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.domains: set[str] = set()
            self.txt: dict[str, list[tuple[str, ...]]] = {}
            self.failing: set[str] = set()
            self.queries: list[tuple[str, str]] = []
            self.on_query: Callable[[str], None] | None = None

    def add_domain(self, name: str) -> None:
        with self._lock:
            self.domains.add(_key(name))

    def add_txt(self, name: str, *records: str | tuple[str, ...]) -> None:
        with self._lock:
            self.txt.setdefault(_key(name), []).extend(
                (r,) if isinstance(r, str) else tuple(r) for r in records
            )

    def remove_txt(self, name: str) -> None:
        with self._lock:
            self.txt.pop(_key(name), None)

    def servfail(self, name: str) -> None:
        with self._lock:
            self.failing.add(_key(name))

    def _exists(self, name: str) -> bool:
        return name in self.domains or name in self.txt

    def _soa_owner(self, name: str) -> str | None:
        """The nearest registered domain at or above `name` (the zone apex we pretend)."""
        labels = name.split(".")
        for i in range(len(labels)):
            candidate = ".".join(labels[i:])
            if candidate in self.domains:
                return candidate
        return None

    def _soa(self, owner: str) -> RR:
        return RR(
            owner + ".",
            QTYPE.SOA,
            ttl=TTL,
            rdata=SOA(f"ns.{owner}.", f"hostmaster.{owner}.", (1, 3600, 600, 86400, TTL)),
        )

    def resolve(self, request: DNSRecord, handler) -> DNSRecord:
        reply = request.reply()
        name = _key(request.q.qname)
        qtype = QTYPE[request.q.qtype]
        hook = self.on_query
        if hook is not None:
            hook(name)
        with self._lock:
            self.queries.append((name, qtype))
            if name in self.failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            apex = self._soa_owner(name)
            if qtype == "TXT" and name in self.txt:
                for strings in self.txt[name]:
                    reply.add_answer(
                        RR(name + ".", QTYPE.TXT, ttl=TTL, rdata=TXT([s.encode() for s in strings]))
                    )
                return reply
            if qtype == "SOA" and name in self.domains:
                reply.add_answer(self._soa(name))
                return reply
            if not self._exists(name):
                reply.header.rcode = RCODE.NXDOMAIN
            if apex is not None:
                reply.add_auth(self._soa(apex))
            return reply


class ZoneServer:
    """`Zone` served over UDP on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self) -> None:
        self.zone = Zone()
        logger = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False)
        self._server = DNSServer(self.zone, address="127.0.0.1", port=0, logger=logger)
        self.port = self._server.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> ZoneServer:
        self._server.start_thread()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()
        self._server.thread.join(timeout=5)


class SilentServer:
    """A bound UDP socket on 127.0.0.1 that receives DNS questions and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()
