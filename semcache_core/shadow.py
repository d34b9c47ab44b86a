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

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass


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


class ShadowLedger:
    """Thread-safe, bounded map from a request's entry key to its parked candidates."""

    def __init__(
        self,
        max_items: int = 10_000,
        max_age: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_items = max_items
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, deque[PendingCandidate]] = OrderedDict()
        self._size = 0
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
        candidate = PendingCandidate(key, similarity, text, question, self._clock(), guarded)
        with self._lock:
            queue = self._items.get(request_key)
            if queue is None:
                queue = self._items[request_key] = deque()
            else:
                self._items.move_to_end(request_key)
            queue.append(candidate)
            self._size += 1
            self._evict()

    def take(self, request_key: str) -> PendingCandidate | None:
        """The oldest fresh candidate parked for this request, removed; else ``None``."""
        now = self._clock()
        with self._lock:
            queue = self._items.get(request_key)
            while queue:
                candidate = queue.popleft()
                self._size -= 1
                if not queue:
                    del self._items[request_key]
                if now - candidate.parked_at <= self.max_age:
                    return candidate
                self.dropped += 1
                queue = self._items.get(request_key)
            return None

    def __len__(self) -> int:
        with self._lock:
            return self._size

    def _evict(self) -> None:
        now = self._clock()
        while self._items and self._size > self.max_items:
            self._pop_oldest()
        while self._items:
            oldest = next(iter(self._items.values()))
            if now - oldest[0].parked_at <= self.max_age:
                break
            self._pop_oldest()

    def _pop_oldest(self) -> None:
        request_key, queue = next(iter(self._items.items()))
        queue.popleft()
        self._size -= 1
        self.dropped += 1
        if not queue:
            del self._items[request_key]
