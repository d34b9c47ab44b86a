"""Pure builders for RediSearch query strings. Every value that reaches a query is
escaped here, and only here.

Tenants, scopes and tags are stored in TAG fields as hex digests (see `request`): a raw
tenant id in a TAG field would be case-folded, whitespace-trimmed and split at the
separator, so "Acme" and "acme", or "a,b" and "a", would share entries. Digests are
escaped anyway, so a future field that holds raw text cannot open a hole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def escape_tag(value: str) -> str:
    """Escape every character RediSearch could read as syntax inside ``{...}``."""
    return _UNSAFE.sub(lambda m: "\\" + m.group(0), value)


def tag_any(field: str, values: Sequence[str]) -> str:
    """``@field:{a | b}``: documents carrying any of ``values``."""
    if not values:
        raise ValueError("tag_any needs at least one value")
    return f"@{field}:{{{' | '.join(escape_tag(v) for v in values)}}}"


def tag_all(field: str, values: Sequence[str]) -> str:
    """Documents carrying every one of ``values``."""
    if not values:
        raise ValueError("tag_all needs at least one value")
    return " ".join(f"@{field}:{{{escape_tag(v)}}}" for v in values)


def numeric_below(field: str, bound: float) -> str:
    """Documents whose ``field`` is strictly below ``bound``."""
    return f"@{field}:[-inf ({bound!r}]"


def knn(
    filter_expr: str,
    *,
    k: int,
    vector_param: str,
    hybrid_policy: str | None,
    ef_runtime: int | None = None,
) -> str:
    """A pre-filtered KNN query: the filter applies inside the vector search;
    ``ef_runtime`` (HNSW only) overrides the index's EF_RUNTIME for this query."""
    policy = f" HYBRID_POLICY {hybrid_policy.upper()}" if hybrid_policy else ""
    ef = f" EF_RUNTIME {int(ef_runtime)}" if ef_runtime else ""
    return f"({filter_expr})=>[KNN {k} @vector ${vector_param}{policy}{ef} AS distance]"


def conjunction(clauses: Sequence[str]) -> str:
    """All of ``clauses`` (``*`` when there are none)."""
    return " ".join(f"({c})" for c in clauses) if clauses else "*"
