"""Request coalescing: one LLM call per cold key, not one per concurrent caller.

LangChain splits a cache miss in two: ``lookup`` misses, the LLM runs, ``update`` stores.
So the coalescer never carries values. At lookup-miss time `Coalescer.begin` makes the
caller the key's *leader* (go call the LLM) or a *waiter*; a waiter `join`\\ s the flight
(blocks up to ``wait_timeout``) and then re-reads the cache. The store of the key calls
`finish`, which releases the flight. A leader whose LLM call failed calls `abandon`:
its waiters are released at once (`Joined.ABANDONED`) and `begin` again, so one of them
leads the next call while the others wait for it, within their original bound. A leader
that vanishes without either holds the flight at most ``lease`` seconds, or until a
waiter gives up on it and takes over.

Two levels, the same API:

* in process (`SingleFlight`): a registry of flights that thread waiters (an event) and
  asyncio waiters (a future on their own loop, resolved thread-safely) can both join;
  no I/O.
* across processes (`semcache_core._async.coalescing`, given a store): the process's
  local leader also takes ``SET <prefix>:__lock__:<ns>:<rest> <token> NX PX <lease>``.
  Only the lock holder leads; the other processes' local leaders wait by **polling the lock key**
  every ``poll_interval`` (GET, one small command; no subscriber connection per
  waiter) and re-read when it is gone, i.e. when the leader stored (`finish` deletes
  it), abandoned (`abandon` deletes it too), or its lease expired. A lock gone with the
  entry still missing means the leader gave up: the pollers `begin` again (one takes the
  lock, the rest poll it).

Bounds: a waiter returns after at most ``wait_timeout`` (plus one poll interval across
processes), whatever the leader does, crashed or not. One waiter of a flight that timed
out takes it over (compare-and-set on the leader's token), so later arrivals wait on a
live leader instead of a dead one. Exactly one caller leads per key while the leader
stores within ``wait_timeout``; each further ``wait_timeout`` without a store lets one
more (the taker-over) lead, and waiters that time out call the LLM themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_SWEEP_EVERY = 256  # begins between sweeps of lapsed flights


class Role(str, enum.Enum):
    """What `begin` made the caller."""

    LEADER = "leader"
    """Call the LLM and store (which calls `finish`)."""
    WAITER = "waiter"
    """Call `join`, then read the cache again."""


class Joined(str, enum.Enum):
    """How a `join` ended; in every case the caller reads the cache again next."""

    FINISHED = "finished"
    """The leader stored (or released its flight): the entry is probably there."""
    TIMED_OUT = "timed_out"
    """``wait_timeout`` passed; on a miss, call the LLM."""
    TOOK_OVER = "took_over"
    """Timed out, and this caller now leads the key (call the LLM, then store)."""
    ABANDONED = "abandoned"
    """The leader gave up without an answer (its call failed; `SingleFlight.abandon`),
    or, for the local waiters of a process that polled another's lock, the lock went
    away. Read the cache again; on a miss, `begin` again: one caller leads next."""


class _Flight:
    """One key's in-process flight: who leads, until when, and who waits."""

    __slots__ = ("abandoned", "done", "expires_at", "futures", "remote", "token")

    def __init__(self, token: str, expires_at: float) -> None:
        self.token = token
        self.expires_at = expires_at
        self.done = threading.Event()
        self.futures: list[asyncio.Future[None]] = []
        self.remote: str | None = None  # the Redis lock token this process waits on
        self.abandoned = False  # ended without an answer: waiters begin again

    def ended(self) -> Joined:
        """How a join on this (ended) flight ends."""
        return Joined.ABANDONED if self.abandoned else Joined.FINISHED


@dataclass
class Ticket:
    """The outcome of `begin`: the caller's role for one key.

    Attributes:
        key: the entry key.
        role: `Role.LEADER` or `Role.WAITER`.
        token: identifies the leadership (local flight and Redis lock value).
        started: monotonic time of `begin`; a waiter's bound counts from here.
        remote: this process leads locally but another process holds the Redis lock:
            `join` polls that lock.
    """

    key: str
    role: Role
    token: str
    started: float
    remote: bool = False
    _flight: _Flight | None = field(default=None, repr=False)

    @property
    def leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def live(self) -> bool:
        """The flight this ticket belongs to has not ended (no I/O)."""
        return self._flight is not None and not self._flight.done.is_set()


class SingleFlight:
    """In-process single-flight per key, for threads and asyncio alike (no I/O).

    Args:
        wait_timeout: seconds a waiter waits at most.
        lease: seconds a flight lasts without `finish` (its leader never stored).
        timer: monotonic clock.

    Example:
        >>> flights = SingleFlight(wait_timeout=2.0)
        >>> t = flights.begin(key)
        >>> if t.leader:
        ...     answer = call_llm(); cache_write(answer); flights.finish(key)
        ... else:
        ...     flights.join(t); answer = cache_read() or call_llm()
    """

    def __init__(
        self,
        *,
        wait_timeout: float = 2.0,
        lease: float = 30.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if wait_timeout < 0 or lease <= 0:
            raise ValueError("need wait_timeout >= 0 and lease > 0")
        self.wait_timeout = wait_timeout
        self.lease = lease
        self._timer = timer
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._begun = 0
        self.leaders = 0
        self.waiters = 0
        self.timeouts = 0
        self.takeovers = 0

    def __len__(self) -> int:
        return len(self._flights)

    def begin(self, key: str, started: float | None = None) -> Ticket:
        """Lead ``key`` if no live flight has it, else wait for that flight.

        Args:
            key: the entry key.
            started: when the caller first began (a caller that begins again after an
                abandoned flight keeps its original bound); default now.
        """
        now = self._timer()
        with self._lock:
            self._begun += 1
            if self._begun % _SWEEP_EVERY == 0:
                self._sweep(now)
            flight = self._flights.get(key)
            since = now if started is None else started
            if flight is not None and flight.expires_at > now:
                self.waiters += 1
                return Ticket(key, Role.WAITER, flight.token, since, _flight=flight)
            if flight is not None:
                self._release(key, flight)  # a lapsed leader: wake its waiters
            token = uuid.uuid4().hex
            flight = self._flights[key] = _Flight(token, now + self.lease)
            self.leaders += 1
            return Ticket(key, Role.LEADER, token, since, _flight=flight)

    def join(self, ticket: Ticket, timeout: float | None = None) -> Joined:
        """Block until the ticket's flight finishes or the bound passes (threads).

        Args:
            ticket: a `Role.WAITER` ticket.
            timeout: overrides ``wait_timeout``, counted from `begin`.
        """
        flight = ticket._flight
        if flight is None or ticket.leader:
            return Joined.FINISHED
        deadline = ticket.started + (self.wait_timeout if timeout is None else timeout)
        while True:
            if flight.done.wait(self._remaining(flight, deadline)):
                return flight.ended()
            verdict = self._timed_out(ticket, flight, deadline)
            if verdict is not None:
                return verdict

    async def ajoin(self, ticket: Ticket, timeout: float | None = None) -> Joined:
        """The asyncio twin of `join`: waits on a future of the running loop."""
        flight = ticket._flight
        if flight is None or ticket.leader:
            return Joined.FINISHED
        deadline = ticket.started + (self.wait_timeout if timeout is None else timeout)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            if flight.done.is_set():
                return flight.ended()
            flight.futures.append(future)
        try:
            while True:
                try:
                    await asyncio.wait_for(
                        asyncio.shield(future), self._remaining(flight, deadline)
                    )
                    return flight.ended()
                except asyncio.TimeoutError:
                    verdict = self._timed_out(ticket, flight, deadline)
                    if verdict is not None:
                        return verdict
        finally:
            with self._lock:
                if future in flight.futures:
                    flight.futures.remove(future)

    def finish(self, key: str) -> bool:
        """The key was stored: end its flight and wake every waiter (any thread or loop).

        Returns:
            True if a flight was running.
        """
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                return False
            self._release(key, flight)
            return True

    def holds(self, ticket: Ticket) -> bool:
        """The ticket still leads its key's flight."""
        with self._lock:
            return self._holds(ticket)

    def _holds(self, ticket: Ticket) -> bool:
        flight = self._flights.get(ticket.key)
        return flight is not None and flight is ticket._flight and flight.token == ticket.token

    def abandon(self, ticket: Ticket) -> bool:
        """A leader gives up without storing (its LLM call failed): end its flight if it
        still leads, and wake every waiter at once with `Joined.ABANDONED` (they begin
        again: one leads the next call).

        Returns:
            True if the ticket still led its flight.
        """
        with self._lock:
            flight = ticket._flight
            if flight is None or not self._holds(ticket):
                return False
            flight.abandoned = True
            self._release(ticket.key, flight)
            return True

    def drop(self, key: str) -> bool:
        """End ``key``'s flight without an answer known to be stored (the remote lock its
        leader polled went away): its waiters look again and, on a miss, begin again."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                return False
            flight.abandoned = True
            self._release(key, flight)
            return True

    def _remaining(self, flight: _Flight, deadline: float) -> float:
        return max(0.0, min(deadline, flight.expires_at) - self._timer())

    def _timed_out(self, ticket: Ticket, flight: _Flight, deadline: float) -> Joined | None:
        """A wait ended without a release: ``None`` to wait on (another waiter took the
        flight over and our bound has not passed), else how the join ends. The first
        waiter to give up on a leader takes its flight over, waiters and all."""
        with self._lock:
            now = self._timer()
            if flight.done.is_set():
                return flight.ended()
            if now < deadline and flight.expires_at > now:
                return None
            self.timeouts += 1
            # A flight whose leader itself waits on another process is not taken over
            # here: that leader takes the Redis lock over instead.
            if (
                self._flights.get(ticket.key) is flight
                and flight.token == ticket.token
                and flight.remote is None
            ):
                ticket.token = flight.token = uuid.uuid4().hex
                flight.expires_at = now + self.lease
                ticket.role = Role.LEADER
                self.takeovers += 1
                self.leaders += 1
                return Joined.TOOK_OVER
            return Joined.TIMED_OUT

    def _sweep(self, now: float) -> None:
        """Lock held: forget flights whose leader never finished and nobody asked again."""
        for key, flight in [(k, f) for k, f in self._flights.items() if f.expires_at <= now]:
            self._release(key, flight)

    def _release(self, key: str, flight: _Flight) -> None:
        """Lock held: end a flight and resolve its waiters on their own loops."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        flight.done.set()
        for future in flight.futures:
            loop = future.get_loop()
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there
                loop.call_soon_threadsafe(_resolve, future)
        flight.futures.clear()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
