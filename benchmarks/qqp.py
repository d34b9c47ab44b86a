"""QQP data and cached MiniLM vectors for the benchmarks.

The question texts come from ``/work/shared/data/qqp_dev.jsonl`` (override with
``SEMCACHE_QQP``) and never enter the repository: the vector cache under
``benchmarks/.cache/`` holds numbers only, one row per unique text in first-appearance
order, keyed by the data file's sha256.

Run ``python benchmarks/qqp.py`` to build the plain-text vector cache ahead of time
(about 4 minutes on 2 cores); the benchmarks build what they miss on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DATA_ENV = "SEMCACHE_QQP"
DEFAULT_DATA = Path("/work/shared/data/qqp_dev.jsonl")
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
DIMS = 384
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def data_path() -> Path:
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA)


def require_data() -> Path:
    """The data file, or exit non-zero saying where it was expected."""
    path = data_path()
    if not path.is_file():
        print(
            f"error: the QQP data file {path} is missing. Put qqp_dev.jsonl there (lines of "
            f'{{"text_a", "text_b", "label"}}) or set {DATA_ENV}=/path/to/qqp_dev.jsonl.',
            file=sys.stderr,
        )
        raise SystemExit(2)
    return path


@dataclass
class Pair:
    a: int
    b: int
    label: int


@dataclass
class QQP:
    """Unique texts (first-appearance order), the pairs as text indices, and groups."""

    texts: list[str]
    pairs: list[Pair]
    digest: str
    index: dict[str, int] = field(default_factory=dict)
    group: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.texts)}
        self.group = _components(len(self.texts), ((p.a, p.b) for p in self.pairs if p.label))


def _components(n: int, edges: Iterable[tuple[int, int]]) -> list[int]:
    """Connected components (union-find); a group id is the smallest text index in it."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


def load() -> QQP:
    path = require_data()
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:16]
    index: dict[str, int] = {}
    texts: list[str] = []
    pairs: list[Pair] = []

    def idx(text: str) -> int:
        found = index.get(text)
        if found is None:
            found = index[text] = len(texts)
            texts.append(text)
        return found

    for line in raw.decode("utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        pairs.append(Pair(idx(row["text_a"]), idx(row["text_b"]), int(row["label"])))
    return QQP(texts=texts, pairs=pairs, digest=digest)


def _model() -> Any:
    from semcache_core.embedding import minilm

    return minilm()


def _embed_rows(texts: Sequence[str], label: str) -> np.ndarray:
    model = _model()
    out = np.empty((len(texts), DIMS), dtype=np.float32)
    step = 4096
    started = time.perf_counter()
    for start in range(0, len(texts), step):
        chunk = texts[start : start + step]
        out[start : start + len(chunk)] = np.asarray(
            model._model.encode(
                list(chunk), normalize_embeddings=True, show_progress_bar=False, batch_size=64
            ),
            dtype=np.float32,
        )
        done = start + len(chunk)
        rate = done / (time.perf_counter() - started)
        print(f"  embedded {done:,}/{len(texts):,} {label} ({rate:.0f}/s)", file=sys.stderr)
    return out


class VectorStore:
    """A partial, persistent matrix of MiniLM vectors: row i embeds ``form(texts[i])``.

    Rows not computed yet are NaN; `ensure` embeds the missing rows it is asked for and
    saves the matrix.
    """

    def __init__(self, data: QQP, kind: str) -> None:
        self.data = data
        self.kind = kind
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        self.path = CACHE_DIR / f"qqp_{data.digest}_minilm_{kind}.npy"
        if self.path.is_file():
            self.matrix = np.load(self.path)
        else:
            self.matrix = np.full((len(data.texts), DIMS), np.nan, dtype=np.float32)

    def form(self, text: str) -> str:
        """The string that gets embedded for a text."""
        if self.kind == "plain":
            return text
        if self.kind == "chatjson":
            return chat_prompt(text)
        raise ValueError(self.kind)

    def ensure(self, rows: Iterable[int]) -> None:
        wanted = np.unique(np.fromiter(rows, dtype=np.int64))
        missing = wanted[np.isnan(self.matrix[wanted, 0])] if len(wanted) else wanted
        if len(missing) == 0:
            return
        print(
            f"embedding {len(missing):,} texts with MiniLM ({self.kind}); cached in "
            f"{self.path.relative_to(CACHE_DIR.parent.parent)}",
            file=sys.stderr,
        )
        forms = [self.form(self.data.texts[i]) for i in missing]
        self.matrix[missing] = _embed_rows(forms, self.kind)
        if self.path.is_file():  # another process may have added rows meanwhile: merge
            disk = np.load(self.path)
            if disk.shape == self.matrix.shape:
                take = np.isnan(self.matrix[:, 0]) & ~np.isnan(disk[:, 0])
                self.matrix[take] = disk[take]
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, self.matrix)
        tmp.replace(self.path)


def chat_prompt(text: str) -> str:
    """What LangChain hands a cache as ``prompt`` for a chat model asked ``text``."""
    from langchain_core.load import dumps
    from langchain_core.messages import HumanMessage

    return dumps([HumanMessage(content=text)])


def main() -> None:
    data = load()
    kinds = sys.argv[1:] or ["plain"]
    for kind in kinds:
        VectorStore(data, kind).ensure(range(len(data.texts)))
    print(f"{len(data.texts):,} unique texts, {len(data.pairs):,} pairs: vectors ready")


if __name__ == "__main__":
    main()
