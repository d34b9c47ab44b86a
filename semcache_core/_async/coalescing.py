"""Coalescing across processes: the Redis half of single-flight (async, written once).

The in-process half is `semcache_core.coalesce.SingleFlight` (no I/O). Given a store,
the process's local leader of a key also takes the key's lock in Redis; only the lock
holder leads, and the other processes' local leaders wait by polling the lock (one GET
per ``poll_interval``) and re-read when it is gone. A waiter that timed out takes the
lock over (compare-and-set on the token it watched). A leader whose LLM call failed
`abandon`\\ s: its local flight ends at once and its lock is deleted (compare-and-delete
on its token), so pollers elsewhere see it gone within one poll. Redis faults never
raise out of here: a failed lock degrades to in-process coalescing (fail-open).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..coalesce import Joined, Role, SingleFlight, Ticket
from ..concurrency import AsyncCheck, async_sleep
from ..errors import BackendUnavailableError

if TYPE_CHECKING:
    from ..storage._async.store import AsyncStore

POLL_INTERVAL = 0.02
# Times a caller begins again after abandoned flights (each needs a leader that failed,
# and the caller's bound still holds): a backstop, never reached in practice.
MAX_REBEGINS = 100


class AsyncCoalescing:
    """Single-flight per entry key, in this process and (given a store) across them.

    Args:
        flights: the engine's in-process flights.
        timer: monotonic clock.
        poll_interval: seconds between polls of another process's lock.
    """

    def __init__(
        self,
        flights: SingleFlight,
        timer: Callable[[], float],
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.local = flights
        self.timer = timer
        self.poll_interval = poll_interval
        self.errors = 0

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.local.lease * 1000))

    async def begin(
        self, key: str, store: AsyncStore | None, started: float | None = None
    ) -> Ticket:
        """Called on a lookup miss: lead the key (call the LLM) or wait for its leader
        (`join`, then look up again). ``started``: a caller beginning again after an
        abandoned flight keeps its first bound."""
        ticket = self.local.begin(key, started)
        if not ticket.leader or store is None:
            return ticket
        try:
            got, holder = await store.lock(key, ticket.token, self.lease_ms)
        except BackendUnavailableError:
            self.errors += 1
            return ticket
        if got or holder is None:
            # Ours, or the holder finished between SET and GET: lead (the caller re-reads).
            return ticket
        self.local.leaders -= 1
        self.local.waiters += 1
        ticket.role, ticket.remote = Role.WAITER, True
        _watch(ticket, holder)
        return ticket

    async def turn(self, key: str, store: AsyncStore | None, misses: AsyncCheck) -> Ticket | None:
        """After a lookup miss: lead the key (its ticket: call the LLM, then store), or
        wait for its leader and look again (``misses``: the lookup still misses).

        Returns ``None`` when the caller need not lead: served after its wait, or a wait
        that ended without an answer to wait for (timed out, or the store was skipped).
        When the leader gives up (or, across processes, its lock goes away) and the
        lookup still misses, the caller begins again within its first bound: one caller
        leads the next call, the others wait for it.
        """
        started: float | None = None
        for _ in range(MAX_REBEGINS):
            ticket = await self.begin(key, store, started)
            if ticket.leader:
                return ticket
            started = ticket.started
            joined = await self.join(ticket, store)
            missed = await misses()
            if joined is Joined.TOOK_OVER:
                if missed:
                    return ticket
                await self.finish(key, store)  # served after all: nothing to lead
                return None
            again = joined is Joined.ABANDONED or (joined is Joined.FINISHED and ticket.remote)
            if not (missed and again):
                return None
        return None

    async def join(self, ticket: Ticket, store: AsyncStore | None) -> Joined:
        """Wait (bounded) for the ticket's leader; then look the request up again."""
        if ticket.leader and not ticket.remote:
            return Joined.FINISHED
        if not ticket.remote:
            return await self.local.ajoin(ticket)
        finished = await self._poll(ticket, store)
        if finished:
            # Stored or abandoned, the lock does not say: this process's waiters re-read
            # and, on a miss, begin again (as this caller does; see AsyncCache._lookup).
            self.local.drop(ticket.key)
            return Joined.FINISHED
        if store is not None:
            new_token = uuid.uuid4().hex
            try:
                took = await store.take_over(
                    ticket.key, _watched(ticket), new_token, self.lease_ms
                )
            except BackendUnavailableError:
                self.errors += 1
                took = False
            if took:
                return self._took_over(ticket, new_token)
        self.local.timeouts += 1
        return Joined.TIMED_OUT

    async def finish(self, key: str, store: AsyncStore | None) -> None:
        """Called after the store of ``key`` (written or skipped): release its flight
        here and its lock in Redis (whoever holds it: the entry now exists)."""
        self.local.finish(key)
        if store is not None:
            try:
                await store.unlock(key)
            except BackendUnavailableError:
                self.errors += 1

    async def abandon(self, ticket: Ticket, store: AsyncStore | None) -> bool:
        """A leader will not store (its LLM call failed): end its flight here (waiters
        released at once, one leads next) and delete its Redis lock if it still holds it.

        Returns:
            True if the ticket still led (``False``: it stored, or another took over).
        """
        if not self.local.holds(ticket):
            return False
        # The lock first: the waiters released below begin again at once, and one of
        # them takes the lock (had it still been ours, it would poll it instead).
        if store is not None and ticket.leader and not ticket.remote:
            try:
                await store.release(ticket.key, ticket.token)
            except BackendUnavailableError:
                self.errors += 1
        return self.local.abandon(ticket)

    async def _poll(self, ticket: Ticket, store: AsyncStore | None) -> bool:
        """True when the remote lock we wait on is gone before our bound."""
        deadline = ticket.started + self.local.wait_timeout
        while True:
            try:
                holder = await store.lock_holder(ticket.key) if store is not None else None
            except BackendUnavailableError:
                self.errors += 1
                return False
            if holder is None:
                return True
            left = deadline - self.timer()
            if left <= 0:
                _watch(ticket, holder)
                return False
            await async_sleep(min(self.poll_interval, left))

    def _took_over(self, ticket: Ticket, token: str) -> Joined:
        """This process now holds the lock under ``token``: its local flight gets the
        same token, so local waiters of the old leadership do not take it over too."""
        with self.local._lock:
            ticket.role, ticket.remote, ticket.token = Role.LEADER, False, token
            flight = ticket._flight
            if flight is not None:
                flight.token = token
                flight.remote = None
            self.local.takeovers += 1
            self.local.leaders += 1
        return Joined.TOOK_OVER


def _watch(ticket: Ticket, holder: str | None) -> None:
    if ticket._flight is not None:
        ticket._flight.remote = holder


def _watched(ticket: Ticket) -> str:
    flight = ticket._flight
    return flight.remote if flight is not None and flight.remote else ""
