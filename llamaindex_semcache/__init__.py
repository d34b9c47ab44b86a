"""LlamaIndex components on the semcache engine.

LlamaIndex has no response-cache slot, so these wrap: `wrap` an LLM for ``Settings.llm``
(all chat/complete endpoints, streams, structured output, agents), `CachedEmbedding`
for embeddings, and `SemanticCacheQueryEngine` / `SemanticCacheRetriever` for whole
answers. Needs ``pip install "semcache[llamaindex]"``.
"""

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'llamaindex_semcache needs LlamaIndex: pip install "semcache[llamaindex]"'
    ) from exc

from semcache_core import cache_context, tenant

from .embedding import CachedEmbedding
from .events import SemanticCacheEvent, SemanticCacheHitEvent, SemanticCacheMissEvent
from .llm import SemanticCacheFunctionCallingLLM, SemanticCacheLLM, wrap
from .query_engine import SemanticCacheQueryEngine, SemanticCacheRetriever
from .serialization import CachedRecord

__all__ = [
    "CachedEmbedding",
    "CachedRecord",
    "SemanticCacheEvent",
    "SemanticCacheFunctionCallingLLM",
    "SemanticCacheHitEvent",
    "SemanticCacheLLM",
    "SemanticCacheMissEvent",
    "SemanticCacheQueryEngine",
    "SemanticCacheRetriever",
    "cache_context",
    "tenant",
    "wrap",
]
