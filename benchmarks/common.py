"""Shared pieces of the benchmarks: a private Redis, embedders, the machine, output.

Every cache under test gets the same vectors: `TableEmbeddings` (LangChain) and
`TableVectorizer` (RedisVL) look a text up in a table of precomputed MiniLM vectors and
fall back to the real model for texts they do not know (counted in ``fallbacks``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import redis
from langchain_core.embeddings import Embeddings
from pydantic import ConfigDict, PrivateAttr
from redisvl.utils.vectorize.base import BaseVectorizer
from rich.console import Console

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = (
    "semcache",
    "redis",
    "redisvl",
    "langchain-core",
    "langchain-redis",
    "sentence-transformers",
    "torch",
    "numpy",
)

VectorLookup = Callable[[str], "np.ndarray | None"]


def _fallback_model() -> Any:
    from semcache_core.embedding import minilm

    return minilm()


class TableEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` that returns precomputed vectors.

    Args:
        lookup: text -> vector, or ``None`` when the text is unknown.
        fallback: ``"model"`` embeds unknown texts with MiniLM; ``"hash"`` returns a
            deterministic random unit vector (for probes such as ``"test"``).
    """

    def __init__(self, lookup: VectorLookup, fallback: str = "hash") -> None:
        self._lookup = lookup
        self._fallback = fallback
        self.fallbacks = 0
        # The table holds all-MiniLM-L6-v2's own vectors, so it names that model: an
        # index it filled is one the model may query (speed.py's end-to-end rows do).
        self.model = "sentence-transformers/all-MiniLM-L6-v2"

    def _vector(self, text: str) -> list[float]:
        vec = self._lookup(text)
        if vec is not None:
            return vec.tolist()  # type: ignore[no-any-return]
        self.fallbacks += 1
        if self._fallback == "model":
            return _fallback_model().embed(text)  # type: ignore[no-any-return]
        return hash_vector(text).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    async def aembed_query(self, text: str) -> list[float]:
        return self._vector(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]


class MiniLMEmbeddings(Embeddings):
    """The bundled MiniLM as a LangChain ``Embeddings`` (async: semcache's batcher)."""

    def __init__(self) -> None:
        self._model = _fallback_model()
        self.model = "sentence-transformers/all-MiniLM-L6-v2"

    def embed_query(self, text: str) -> list[float]:
        return self._model.embed(text)  # type: ignore[no-any-return]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._model.embed_many(texts)  # type: ignore[no-any-return]

    async def aembed_query(self, text: str) -> list[float]:
        return await self._model.aembed(text)  # type: ignore[no-any-return]


class TableVectorizer(BaseVectorizer):
    """A RedisVL vectorizer over a function text -> vector (precomputed or MiniLM)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _embed_fn: Callable[[str], list[float]] = PrivateAttr()
    _aembed_fn: Callable[[str], Any] | None = PrivateAttr(default=None)

    def __init__(
        self,
        embed_fn: Callable[[str], list[float]],
        aembed_fn: Callable[[str], Any] | None = None,
        *,
        model: str = "table:all-MiniLM-L6-v2",
    ) -> None:
        super().__init__(model=model, dims=384, dtype="float32")
        self._embed_fn = embed_fn
        self._aembed_fn = aembed_fn

    def _embed(self, content: Any, **kwargs: Any) -> list[float]:
        return self._embed_fn(str(content))

    def _embed_many(self, contents: list[Any], batch_size: int = 10, **kwargs: Any) -> Any:
        return [self._embed_fn(str(c)) for c in contents]

    async def _aembed(self, content: Any, **kwargs: Any) -> list[float]:
        if self._aembed_fn is None:
            return self._embed_fn(str(content))
        return await self._aembed_fn(str(content))  # type: ignore[no-any-return]


def hash_vector(text: str, dims: int = 384) -> np.ndarray:
    """A deterministic random unit vector for a text."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vec = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
    return vec / np.linalg.norm(vec)  # type: ignore[no-any-return]


@contextmanager
def private_redis(console: Console) -> Iterator[str]:
    """Start an embedded Redis of our own (temp data dir, no persistence); stop it after."""
    from semcache_core.embedded import start_embedded_redis

    # SIGTERM (kill) unwinds like Ctrl-C, so the server below is always stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    data_dir = Path(tempfile.mkdtemp(prefix="semcache-bench-"))
    server = start_embedded_redis(data_dir, reuse=False, appendfsync="no")
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        # A benchmark server: no AOF, no snapshots, so disk I/O does not add noise.
        client.config_set("appendonly", "no")
        client.config_set("save", "")
        info = client.info("server")
        modules = sorted(m["name"] for m in client.module_list())
        console.print(
            f"[dim]private Redis {info['redis_version']} (modules: {', '.join(modules)}) at "
            f"{server.url}, pid {server.pid}, data in {data_dir}; AOF and snapshots off[/]"
        )
        client.close()
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def redis_memory(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def ft_info_mb(url: str, index: str) -> dict[str, float]:
    """The ``*_sz_mb`` figures of FT.INFO for an index (empty if it does not exist)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        raw = client.execute_command("FT.INFO", index)
    except redis.ResponseError:
        return {}
    finally:
        client.close()
    pairs = dict(zip(raw[::2], raw[1::2], strict=False)) if isinstance(raw, list) else raw
    out: dict[str, float] = {}
    for key, value in pairs.items():
        if str(key).endswith("_sz_mb") or str(key) == "num_docs":
            try:
                out[str(key)] = float(value)
            except (TypeError, ValueError):
                continue
    return out


def flushall(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushall()  # our private benchmark server only
    finally:
        client.close()


def machine() -> dict[str, str]:
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if "model name" in ln), "")
    except OSError:
        pass
    out = {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    out["semcache git"] = _git_state()
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "-"
    return out


def _git_state() -> str:
    """The commit measured, and whether the engine had uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "semcache_core", "langchain_semcache"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "-"
    return f"{head}{' + uncommitted changes in semcache_core/langchain_semcache' if dirty else ''}"


def print_machine(console: Console, info: Mapping[str, str]) -> None:
    pkgs = ", ".join(f"{p} {info[p]}" for p in PACKAGES)
    console.print(
        f"[dim]machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']} RAM, "
        f"Python {info['python']}, load {info['load']}\npackages: {pkgs}\nsemcache commit: "
        f"{info['semcache git']}[/]"
    )


def new_console(record: bool = True) -> Console:
    return Console(record=record, width=int(os.environ.get("BENCH_COLUMNS", "150")))


def save_console(console: Console, name: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(console.export_text(styles=False))
    return path


def argv_line() -> str:
    return "python " + " ".join([sys.argv[0], *sys.argv[1:]])
