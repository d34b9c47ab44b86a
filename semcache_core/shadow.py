"""The shadow ledger: candidates a shadow lookup did not serve, awaiting the fresh answer.

LangChain calls ``lookup(prompt, llm_string)``, then the model, then ``update(prompt,
llm_string, answer)``; LlamaIndex's wrapper does the same. The lookup parks the
candidate it did not serve under the request's entry key, and the store of the same
request takes it back to judge it against the fresh answer. Keys are per tenant, scope
and prompt, so concurrent requests never take each other's candidates; identical
concurrent requests park identical candidates, so which one a store takes does not
matter.

Bounded in count and age: a lookup whose store never comes (the LLM failed, the answer
was not cacheable) is dropped after ``max_age`` seconds or when ``max_items`` newer
candidates arrived.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache


@dataclass(frozen=True)
class PendingCandidate:
    """A candidate that was found in shadow mode and not served.

    Attributes:
        key: the candidate entry's Redis key.
        similarity: its cosine similarity to the request.
        text: the candidate answer's text, for the judge.
        question: the request's question.
        parked_at: monotonic seconds when it was parked.
        guarded: the verifier refused it (it would not have been served at any
            threshold); its verdict measures the verifier, not the threshold.
    """

    key: str
    similarity: float
    text: str
    question: str
    parked_at: float
    guarded: bool = False


class _Parked(TTLCache[tuple[str, int], PendingCandidate, float]):
    """Parked candidates by ``(request key, sequence)``, bounded in count and age.

    cachetools removes what ages out (`expire`) or makes room (`popitem`) on its own;
    overriding both is how the ledger hears of each removal, to count it and keep its
    per-request index in step.
    """

    def __init__(
        self,
        maxsize: int,
        ttl: float,
        timer: Callable[[], float],
        on_drop: Callable[[tuple[str, int]], None],
    ) -> None:
        super().__init__(maxsize, ttl, timer)
        self._on_drop = on_drop

    def expire(self, time: float | None = None) -> list[tuple[tuple[str, int], PendingCandidate]]:
        expired = super().expire(time)
        for key, _ in expired:
            self._on_drop(key)
        return expired

    def popitem(self) -> tuple[tuple[str, int], PendingCandidate]:
        key, candidate = super().popitem()
        self._on_drop(key)
        return key, candidate


class ShadowLedger:
    """Thread-safe, bounded map from a request's entry key to its parked candidates.

    Each candidate is one entry of a cachetools `TTLCache` (``max_items`` entries, each
    for ``max_age`` seconds, the oldest evicted first); an index keeps each request's
    candidates in parking order, so `take` finds the oldest in O(1).
    """

    def __init__(
        self,
        max_items: int = 10_000,
        max_age: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_items = max_items
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe
        self._parked = _Parked(max(max_items, 1), max_age, clock, self._forget)
        self._queues: dict[str, deque[int]] = {}  # request key -> sequences, oldest first
        self._seq = itertools.count()
        self.dropped = 0

    def park(
        self,
        request_key: str,
        key: str,
        similarity: float,
        text: str,
        question: str,
        guarded: bool = False,
    ) -> None:
        with self._lock, self._parked.timer as now:
            if self.max_items <= 0:
                self.dropped += 1  # nothing is held
                return
            candidate = PendingCandidate(key, similarity, text, question, now, guarded)
            seq = next(self._seq)
            self._queues.setdefault(request_key, deque()).append(seq)
            self._parked[(request_key, seq)] = candidate  # sweeps stale ones, evicts if full

    def take(self, request_key: str) -> PendingCandidate | None:
        """The oldest fresh candidate parked for this request, removed; else ``None``."""
        with self._lock, self._parked.timer as now:
            self._parked.expire(now)
            queue = self._queues.get(request_key)
            candidate = None
            while queue and candidate is None:
                candidate = self._parked.pop((request_key, queue.popleft()), None)
            if queue is not None and not queue:
                del self._queues[request_key]
            return candidate

    def __len__(self) -> int:
        with self._lock:
            return len(self._parked)

    def _forget(self, entry: tuple[str, int]) -> None:
        """cachetools dropped a candidate (stale or evicted): count it, unindex it."""
        self.dropped += 1
        request_key, seq = entry
        queue = self._queues.get(request_key)
        if not queue:
            return
        # Removals go oldest first, and a request's sequences are in parking order.
        if queue[0] == seq:
            queue.popleft()
        elif seq in queue:
            queue.remove(seq)
        if not queue:
            del self._queues[request_key]
