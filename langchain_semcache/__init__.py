"""LangChain adapter for semcache: a ``BaseCache`` over `semcache_core.CacheEngine`.

Needs ``pip install "semcache[langchain]"``.
"""

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'langchain_semcache needs LangChain: pip install "semcache[langchain]"'
    ) from exc

from semcache_core import cache_context, tenant

from .cache import SemanticCache
from .streaming import CachedStreamingChatModel, replay_chunks

__all__ = [
    "CachedStreamingChatModel",
    "SemanticCache",
    "cache_context",
    "replay_chunks",
    "tenant",
]
