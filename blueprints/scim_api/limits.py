"""What keeps one SCIM client from hurting the service or another tenant, without ever
refusing a well-behaved one (SPEC F5 "Too many requests").

- **In flight.** A connector's requests being served or waiting for their turn, counted in
  this process, or across every process and instance in Redis when
  `SCIM_LIMITS_STORAGE_URI` names one (a sorted set of leases, so a request of a process
  that died stops counting after `LEASE_SECONDS`).
- **Never refused:** a connector with at most `SCIM_FREE_PARALLELISM` requests in flight
  (10 by default: Okta sends about 5 at once, Entra ID about 10). A client with one
  request in flight at a time is never refused, whatever its rate.
- **Rate:** the requests that arrive past that parallelism are held to `SCIM_RATE_LIMIT`
  (a moving window of the `limits` library, the engine of Flask-Limiter, in the same
  store; the requests within the parallelism are not counted); over it, 429 with
  Retry-After = the seconds until the window has room.
  Flask-Limiter itself checks in the application's before_request, before the SCIM
  bearer check has said which connector is calling, or how many of its requests are in
  flight, so its engine is used directly.
- **Cap:** more than `SCIM_MAX_IN_FLIGHT` in flight is a 429 at once (waiting requests
  hold server threads that other tenants need).
- **Turns, per process:** SCIM reads and writes each run a few at a time
  (`SCIM_READERS_PER_PROCESS`, `SCIM_WRITERS_PER_PROCESS`): a worker's threads share one
  interpreter lock, so more at once only makes each slower, and a writer holding the
  database's write lock must not wait for the interpreter behind the others. Waiting
  requests are let in connector by connector in turn (`FairGate`), so a flood from one
  connector delays another's request by at most one request, not by its whole queue.
  The turn is taken before the bearer check (which is work too), keyed by the
  connector id in the URL: requests with a wrong token to a connector's URL wait in that
  connector's line, never in another's.
- **Failed authentication:** `SCIM_FAILED_AUTH_LIMIT` per client address and connector,
  counted only when a token is refused: a request with a valid token is never throttled
  for other tokens' failures, and IdPs sharing one egress address (every Okta customer)
  don't throttle each other.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass

from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)

LEASE_SECONDS = 120  # a request longer than this stops counting as in flight


class _Turn:
    """A waiter's turn: a lock held from the start, released when the turn is handed
    over. (`threading.Event` is a Condition written in Python, several lock operations a
    wait and a set; a gate hands over a turn for every SCIM write.)"""

    __slots__ = ("_lock", "given")

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()
        self.given = False

    def give(self) -> None:
        self.given = True
        self._lock.release()

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=timeout)


class FairGate:
    """At most `slots` holders at once; waiters are let in connector by connector in turn
    (round robin over the connectors waiting, each connector's own requests in arrival
    order). `slots` <= 0 lets everyone in."""

    def __init__(self, slots: int):
        self.slots = slots
        self._lock = threading.Lock()
        self._free = slots
        # connector -> its waiters; the dict's order is the turn order.
        self._waiting: OrderedDict[str, deque[_Turn]] = OrderedDict()

    def enter(self, key: str, timeout: float) -> bool:
        """Wait for a turn; False when `timeout` seconds passed first."""
        if self.slots <= 0:
            return True
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return True
            turn = _Turn()
            self._waiting.setdefault(key, deque()).append(turn)
        if turn.wait(timeout):
            return True
        with self._lock:
            if turn.given:  # handed over just as the wait ended
                return True
            queue = self._waiting[key]
            queue.remove(turn)
            if not queue:
                del self._waiting[key]
            return False

    def leave(self) -> None:
        """Give the turn to the next connector waiting (it goes to the back of the line),
        or free the slot."""
        if self.slots <= 0:
            return
        with self._lock:
            if not self._waiting:
                self._free += 1
                return
            key, queue = self._waiting.popitem(last=False)
            turn = queue.popleft()
            if queue:
                self._waiting[key] = queue
            turn.give()

    def waiting(self) -> dict[str, int]:
        with self._lock:
            return {key: len(queue) for key, queue in self._waiting.items()}


class _InProcess:
    """Requests in flight per connector, in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def enter(self, key: str) -> tuple[int, str | None]:
        with self._lock:
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
            return count, None

    def leave(self, key: str, lease: str | None) -> None:
        with self._lock:
            count = self._counts.get(key, 1) - 1
            if count > 0:
                self._counts[key] = count
            else:
                self._counts.pop(key, None)


class _InRedis:
    """Requests in flight per connector, across processes and instances: a sorted set of
    leases (score: when the lease ends)."""

    def __init__(self, client):
        self._client = client

    def enter(self, key: str) -> tuple[int, str | None]:
        lease, now = uuid.uuid4().hex, time.time()
        name = f"scim:in-flight:{key}"
        pipe = self._client.pipeline()
        pipe.zremrangebyscore(name, "-inf", now)
        pipe.zadd(name, {lease: now + LEASE_SECONDS})
        pipe.zcard(name)
        pipe.expire(name, LEASE_SECONDS)
        return pipe.execute()[2], lease

    def leave(self, key: str, lease: str | None) -> None:
        if lease is not None:
            self._client.zrem(f"scim:in-flight:{key}", lease)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused, and when to come back (whole seconds, at least 1)."""

    detail: str
    retry_after: int


@dataclass
class Admission:
    """A request counted in flight (`count` with it, at its arrival); `leave` when it
    is answered."""

    key: str
    lease: str | None
    counter: object
    count: int


def writers_per_process(config) -> int:
    """SCIM_WRITERS_PER_PROCESS, or when unset the database's: 1 on SQLite (one writer at
    a time in the file anyway), 4 on PostgreSQL (measured: bench/README.md)."""
    chosen = config.get("SCIM_WRITERS_PER_PROCESS")
    if chosen is not None:
        return chosen
    return 1 if str(config.get("SQLALCHEMY_DATABASE_URI", "")).startswith("sqlite") else 4


class Limits:
    """The limits of one application (its configuration), shared by its threads."""

    def __init__(self, config):
        # One request in flight is never refused, whatever the settings say.
        self.free = max(1, config["SCIM_FREE_PARALLELISM"])
        self.cap = max(1, config["SCIM_MAX_IN_FLIGHT"])
        self.rate = parse(config["SCIM_RATE_LIMIT"])
        self.failed = parse(config["SCIM_FAILED_AUTH_LIMIT"])
        self.wait = config["SCIM_QUEUE_WAIT_SECONDS"]
        self.reads = FairGate(config["SCIM_READERS_PER_PROCESS"])
        self.writes = FairGate(writers_per_process(config))
        uri = config.get("SCIM_LIMITS_STORAGE_URI") or "memory://"
        self.shared = not uri.startswith("memory")
        self._local_storage = MemoryStorage()
        self._local = (MovingWindowRateLimiter(self._local_storage), _InProcess())
        if self.shared:
            storage = storage_from_string(uri)
            self._store = (MovingWindowRateLimiter(storage), _InRedis(storage.storage))
        else:
            self._store = self._local
        self._warned_at = 0.0

    def _call(self, use):
        """Run `use(window, counter)` on the shared store; if it fails (Redis down), on
        this process's own, so that an outage of the store never refuses traffic."""
        if self._store is not self._local:
            try:
                return use(*self._store)
            except Exception as error:  # any client or connection error
                if time.monotonic() - self._warned_at > 60:
                    self._warned_at = time.monotonic()
                    log.warning("SCIM limits store unavailable, counting per process: %s", error)
        return use(*self._local)

    @staticmethod
    def _retry_after(window, item, *identifiers) -> int:
        reset = window.get_window_stats(item, *identifiers).reset_time
        return max(1, math.ceil(reset - time.time()))

    def arrive(self, key: str) -> tuple[Admission | None, Refusal | None]:
        """Count a request to connector `key` in flight from its arrival (waiting for its
        turn included), or refuse it at once past the cap."""

        def enter(window, counter):
            count, lease = counter.enter(key)
            if count > self.cap:
                counter.leave(key, lease)
                return None, Refusal(
                    f"Too many requests for this connector at once (over {self.cap} in "
                    "flight). Retry after a second.",
                    1,
                )
            return Admission(key, lease, counter, count), None

        return self._call(enter)

    def check_rate(self, admission: Admission) -> Refusal | None:
        """A request that arrived past its connector's usual parallelism counts against
        the connector's rate; a Refusal when that is over."""
        if admission.count <= self.free:
            return None  # within the connector's usual parallelism: never refused

        def hit(window, counter):
            if window.hit(self.rate, "scim", admission.key):
                return None
            seconds = self._retry_after(window, self.rate, "scim", admission.key)
            return Refusal(
                f"Too many requests for this connector: more than {self.free} at once "
                f"and over its limit of {self.rate}. Retry after {seconds} second(s).",
                seconds,
            )

        return self._call(hit)

    def leave(self, admission: Admission) -> None:
        try:
            admission.counter.leave(admission.key, admission.lease)
        except Exception:  # the store went away: its lease runs out by itself
            log.warning("could not end a SCIM in-flight lease", exc_info=True)

    def failed_authentication(self, address: str, key: str) -> Refusal | None:
        """Count a refused token from `address` to connector `key`; a Refusal once the
        failures are over their limit."""

        def hit(window, counter):
            if window.hit(self.failed, "scim-auth", address, key):
                return None
            seconds = self._retry_after(window, self.failed, "scim-auth", address, key)
            return Refusal(
                "Too many failed authentications from this address. "
                f"Retry after {seconds} second(s).",
                seconds,
            )

        return self._call(hit)

    def reset(self) -> None:
        """Forget every count (tests start clean)."""
        self._local_storage.reset()
        if self.shared:
            try:
                self._store[0].storage.reset()
            except Exception:
                log.warning("could not reset the SCIM limits store", exc_info=True)
