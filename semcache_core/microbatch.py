"""Micro-batching of concurrent async embedding calls.

`MicroBatcher` wraps any embedder. Concurrent ``aembed(text)`` calls on one event loop are
sent to the inner embedder as one batch call, duplicates once, when it has a batch method
whose vectors equal its single-text ones; otherwise each call goes to the inner
``aembed`` as before (gathered: they simply run concurrently).

Timing: a call that arrives while no batch is in flight is dispatched on the next turn of
the loop (so callers started in the same turn, like ``asyncio.gather``, share it, and a
lone call waits about nothing). Calls that arrive while a batch is in flight collect for
at most ``window`` seconds (or until ``max_batch``) and go out as the next batch. So
``window`` only costs latency under concurrency, and it bounds that cost.

Which batch method: the inner's ``aembed_many`` (semcache's own protocol: query vectors)
is used by default. LangChain's ``aembed_documents`` and LlamaIndex's
``aget_text_embedding_batch`` embed *documents*: for instruction models (BGE, E5,
Instructor, any ``query_instruction``) those vectors differ from ``aembed_query`` /
``aget_query_embedding``, which is what semcache stores and searches with. They are used
only with ``documents_match_queries=True``.

`BatchQueue` is the batching itself, for any async ``texts -> vectors``: `MicroBatcher`
uses it with the inner embedder's batch method, and the bundled local model
(`SentenceTransformerEmbedder.aembed`) with one model call at a time.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .embedding import Embedder

BatchFn = Callable[[list[str]], Awaitable[Sequence[Sequence[float]]]]

_DOCUMENT_BATCH_METHODS = ("aembed_documents", "aget_text_embedding_batch")


def find_batch_method(obj: Any, *, documents_match_queries: bool = False) -> BatchFn | None:
    """The async batch method of ``obj`` whose vectors equal its query vectors, or ``None``.

    Args:
        obj: the user's embedder (LangChain, LlamaIndex, RedisVL, semcache, ...).
        documents_match_queries: also accept LangChain ``aembed_documents`` and
            LlamaIndex ``aget_text_embedding_batch``: only for models that embed a
            query and a document the same way (e.g. OpenAI), never instruction models.
    """
    names = ("aembed_many", *(_DOCUMENT_BATCH_METHODS if documents_match_queries else ()))
    for name in names:
        fn = getattr(obj, name, None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    return None


class _LoopQueue:
    """One event loop's texts waiting for a batch, and its batches in flight."""

    def __init__(self, owner: BatchQueue, loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self._loop = loop
        self._pending: list[tuple[str, asyncio.Future[list[float]]]] = []
        self._timer: asyncio.Handle | None = None
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, text: str) -> asyncio.Future[list[float]]:
        future: asyncio.Future[list[float]] = self._loop.create_future()
        self._pending.append((text, future))
        if len(self._pending) >= self._owner.max_batch:
            self._flush()
        elif self._timer is None:
            # Idle: go on the next loop turn. Busy: give other callers the window.
            delay = self._owner.window if self._in_flight else 0.0
            self._timer = (
                self._loop.call_later(delay, self._flush)
                if delay > 0
                else self._loop.call_soon(self._flush)
            )
        return future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        limit = self._owner.max_in_flight
        max_batch = self._owner.max_batch
        # At the in-flight limit, what is pending waits: the batch that ends next sends it.
        while self._pending and (limit is None or self._in_flight < limit):
            batch, self._pending = self._pending[:max_batch], self._pending[max_batch:]
            batch = [(t, f) for t, f in batch if not f.done()]  # cancelled callers
            if not batch:
                continue
            self._in_flight += 1
            task = self._loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[str, asyncio.Future[list[float]]]]) -> None:
        texts = list(dict.fromkeys(text for text, _ in batch))
        try:
            vectors = await self._owner.call(texts)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._in_flight -= 1
            if self._pending and self._timer is None:  # held back by the in-flight limit
                self._timer = self._loop.call_soon(self._flush)
        by_text = dict(zip(texts, vectors, strict=True))
        for text, future in batch:
            if not future.done():
                future.set_result(list(by_text[text]))


class BatchQueue:
    """Sends texts submitted concurrently on an event loop to one async batch function.

    Each event loop has its own queue (futures belong to one loop). A text submitted while
    no batch is in flight goes out on the next loop turn, with whatever else was
    submitted in that turn; texts submitted while a batch is in flight collect for at most
    ``window`` seconds (or until ``max_batch``). Duplicates in a batch are sent once. An
    error of the batch function reaches every caller of that batch.

    Args:
        batch_fn: async ``texts -> vectors``, one vector per text, in order.
        window: seconds texts submitted during a batch wait for company.
        max_batch: texts per batch call at most.
        max_in_flight: batch calls running at once at most (``None``: no limit). With 1,
            texts submitted during a batch wait for it to end and go out together next:
            right for a CPU-bound model, whose concurrent batches would only compete
            for the same cores.

    Attributes:
        calls: texts submitted.
        batches: batch calls made.
        largest: the largest batch sent.
    """

    def __init__(
        self,
        batch_fn: BatchFn,
        *,
        window: float = 0.002,
        max_batch: int = 256,
        max_in_flight: int | None = None,
    ) -> None:
        _check_limits(window, max_batch, max_in_flight)
        self.batch_fn = batch_fn
        self.window = window
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue] = (
            weakref.WeakKeyDictionary()
        )
        self.calls = 0
        self.batches = 0
        self.largest = 0

    async def submit(self, text: str) -> list[float]:
        """The vector of ``text``, from a batch call shared with concurrent submitters."""
        self.calls += 1
        loop = asyncio.get_running_loop()
        queue = self._loops.get(loop)
        if queue is None:
            queue = self._loops[loop] = _LoopQueue(self, loop)
        return await queue.submit(text)

    async def call(self, texts: list[str]) -> list[list[float]]:
        """One batch call for ``texts`` now (counted; no queueing).

        Raises:
            ValueError: the batch function returned a vector count other than ``len(texts)``.
        """
        self.batches += 1
        self.largest = max(self.largest, len(texts))
        vectors = await self.batch_fn(texts)
        if len(vectors) != len(texts):
            raise ValueError(
                f"the batch embedder returned {len(vectors)} vectors for {len(texts)} texts"
            )
        return [[float(x) for x in v] for v in vectors]


class MicroBatcher:
    """An `Embedder` that sends concurrent async calls as one batch to the inner embedder.

    Args:
        embedder: anything `as_embedder` accepts.
        window: seconds calls arriving while a batch is in flight wait for company.
        max_batch: texts per inner call at most.
        documents_match_queries: see `find_batch_method`.
        batch_fn: an explicit async ``texts -> vectors`` to use instead of discovery.
        max_in_flight: inner batch calls running at once at most; see `BatchQueue`.

    Attributes:
        calls: texts submitted to `aembed`.

    Example:
        >>> emb = MicroBatcher(my_embedder, window=0.002)
        >>> vecs = await asyncio.gather(*(emb.aembed(q) for q in questions))
        >>> emb.batches  # far fewer than len(questions)
        2
    """

    def __init__(
        self,
        embedder: Any,
        *,
        window: float = 0.002,
        max_batch: int = 256,
        documents_match_queries: bool = False,
        batch_fn: BatchFn | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        # Imported here: the embedding module's local model batches with this module's queue.
        from .embedding import as_embedder

        _check_limits(window, max_batch, max_in_flight)
        self.raw = embedder
        self.inner: Embedder = as_embedder(embedder)
        self.model_id: str = self.inner.model_id
        self.model_name: str | None = getattr(self.inner, "model_name", None)
        batch_fn = batch_fn or find_batch_method(
            embedder, documents_match_queries=documents_match_queries
        )
        self._queue: BatchQueue | None = (
            BatchQueue(batch_fn, window=window, max_batch=max_batch, max_in_flight=max_in_flight)
            if batch_fn is not None
            else None
        )
        self.window = window
        self.max_batch = max_batch
        self.calls = 0

    @property
    def batch_fn(self) -> BatchFn | None:
        """The inner batch call concurrent calls share, or ``None``."""
        return self._queue.batch_fn if self._queue is not None else None

    @property
    def batching(self) -> bool:
        """True when concurrent calls share inner calls (a batch method was found)."""
        return self._queue is not None

    @property
    def batches(self) -> int:
        """Inner batch calls made."""
        return self._queue.batches if self._queue is not None else 0

    @property
    def largest(self) -> int:
        """The largest batch sent."""
        return self._queue.largest if self._queue is not None else 0

    @property
    def dims(self) -> int | None:
        """The inner embedder's ``dims`` when it declares one (the engine probes this)."""
        dims = getattr(self.raw, "dims", None)
        return dims if isinstance(dims, int) else None

    def embed(self, text: str) -> list[float]:
        """Sync calls go straight through (no loop to batch on)."""
        return self.inner.embed(text)

    async def aembed(self, text: str) -> list[float]:
        """Embed ``text``, sharing an inner batch call with concurrent callers."""
        self.calls += 1
        if self._queue is None:
            return await self.inner.aembed(text)
        return await self._queue.submit(text)

    async def aembed_many(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed several texts (one inner batch call when there is a batch method)."""
        if self._queue is None:
            return list(await asyncio.gather(*(self.inner.aembed(t) for t in texts)))
        return await self._queue.call(list(texts))


def _check_limits(window: float, max_batch: int, max_in_flight: int | None) -> None:
    if window < 0:
        raise ValueError(f"window must be >= 0 seconds, got {window}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if max_in_flight is not None and max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1 or None, got {max_in_flight}")
