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
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .embedding import Embedder, as_embedder

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


class _LoopBatcher:
    """One event loop's queue of texts waiting for a batch."""

    def __init__(self, owner: MicroBatcher, loop: asyncio.AbstractEventLoop) -> None:
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
        batch, self._pending = self._pending, []
        batch = [(t, f) for t, f in batch if not f.done()]  # cancelled callers
        if not batch:
            return
        self._in_flight += 1
        task = self._loop.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[str, asyncio.Future[list[float]]]]) -> None:
        texts = list(dict.fromkeys(text for text, _ in batch))
        try:
            vectors = await self._owner._call_batch(texts)
            if len(vectors) != len(texts):
                raise ValueError(
                    f"the batch embedder returned {len(vectors)} vectors for {len(texts)} texts"
                )
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
        by_text = {t: [float(x) for x in v] for t, v in zip(texts, vectors, strict=True)}
        for text, future in batch:
            if not future.done():
                future.set_result(list(by_text[text]))


class MicroBatcher:
    """An `Embedder` that sends concurrent async calls as one batch to the inner embedder.

    Args:
        embedder: anything `as_embedder` accepts.
        window: seconds calls arriving while a batch is in flight wait for company.
        max_batch: texts per inner call at most.
        documents_match_queries: see `find_batch_method`.
        batch_fn: an explicit async ``texts -> vectors`` to use instead of discovery.

    Attributes:
        calls: texts submitted to `aembed`.
        batches: inner batch calls made.
        largest: the largest batch sent.

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
    ) -> None:
        if window < 0:
            raise ValueError(f"window must be >= 0 seconds, got {window}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.raw = embedder
        self.inner: Embedder = as_embedder(embedder)
        self.model_id: str = self.inner.model_id
        self.window = window
        self.max_batch = max_batch
        self.batch_fn: BatchFn | None = batch_fn or find_batch_method(
            embedder, documents_match_queries=documents_match_queries
        )
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBatcher] = (
            weakref.WeakKeyDictionary()
        )
        self.calls = 0
        self.batches = 0
        self.largest = 0

    @property
    def batching(self) -> bool:
        """True when concurrent calls share inner calls (a batch method was found)."""
        return self.batch_fn is not None

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
        if self.batch_fn is None:
            return await self.inner.aembed(text)
        loop = asyncio.get_running_loop()
        batcher = self._loops.get(loop)
        if batcher is None:
            batcher = self._loops[loop] = _LoopBatcher(self, loop)
        return await batcher.submit(text)

    async def aembed_many(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed several texts (one inner batch call when there is a batch method)."""
        if self.batch_fn is None:
            return list(await asyncio.gather(*(self.inner.aembed(t) for t in texts)))
        return [list(map(float, v)) for v in await self._call_batch(list(texts))]

    async def _call_batch(self, texts: list[str]) -> Sequence[Sequence[float]]:
        assert self.batch_fn is not None
        self.batches += 1
        self.largest = max(self.largest, len(texts))
        return await self.batch_fn(texts)
