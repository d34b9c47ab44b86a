"""A lookup's reads in one round trip (`storage.read_script`), async, written once.

`storage/_sync/reads.py` is generated from this file by ``scripts/unasync.py``. Redis
errors are translated as the store's own methods translate them (`errors.boundary`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..commands import search_query
from ..errors import map_exceptions
from ..read_script import READ_SCRIPT, parse_script_reply, script_args

if TYPE_CHECKING:
    from .store import AsyncStore


async def read_or_search(
    store: AsyncStore,
    key: str,
    partition: str,
    vector: bytes,
    k: int,
    plan: tuple[str | None, int | None],
    *,
    exact: bool,
    min_similarity: float,
) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any] | None, Any]]]:
    """The exact entry ``key`` (``exact``), else the KNN candidates of ``partition``:
    ``(exact fields or None, [(key, fields or None, distance)])``, nearest first; a
    candidate farther than ``min_similarity`` comes without its fields.

    Raises:
        IndexMissingError: the bucket's index is gone.
        BackendRefusedError: Redis refused the script (an ACL without EVAL, a search
            module that may not run in scripts).
    """
    index, query = search_query(store.layout, store.config, partition, k, plan)
    args = script_args(key, index, query, vector, k, exact=exact, min_similarity=min_similarity)
    with map_exceptions(store.url):
        # EVAL, not EVALSHA: the minimal ACL grants EVAL only (docs/reliability.md), and
        # Redis keeps the compiled script by its digest either way.
        reply = await store.client.execute_command("EVAL", READ_SCRIPT, *args)
    return parse_script_reply(reply)
