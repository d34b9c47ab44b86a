"""LlamaIndex components on the semcache engine.

LlamaIndex has no response-cache slot, so these wrap: `wrap` an LLM for ``Settings.llm``
(all chat/complete endpoints, streams, structured output, agents), `CachedEmbedding`
for embeddings (`MiniLMEmbedding`: the bundled offline model), and
`SemanticCacheQueryEngine` / `SemanticCacheRetriever` for whole answers. The tenant of a
call: ``tenant=``, `semcache_core.tenant`, or the ``semcache_tenant`` instrumentation tag
(`instrument_tenant`). Needs ``pip install "semcache[llamaindex]"``.
"""

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'llamaindex_semcache needs LlamaIndex: pip install "semcache[llamaindex]"'
    ) from exc

from semcache_core import cache_context, last_lookup, tenant

from .embedding import CachedEmbedding, MiniLMEmbedding
from .events import SemanticCacheEvent, SemanticCacheHitEvent, SemanticCacheMissEvent
from .llm import SemanticCacheFunctionCallingLLM, SemanticCacheLLM, wrap
from .query_engine import SemanticCacheQueryEngine, SemanticCacheRetriever
from .serialization import CachedRecord
from .tenancy import TENANT_TAG, instrument_tenant

__all__ = [
    "TENANT_TAG",
    "CachedEmbedding",
    "CachedRecord",
    "MiniLMEmbedding",
    "SemanticCacheEvent",
    "SemanticCacheFunctionCallingLLM",
    "SemanticCacheHitEvent",
    "SemanticCacheLLM",
    "SemanticCacheMissEvent",
    "SemanticCacheQueryEngine",
    "SemanticCacheRetriever",
    "cache_context",
    "instrument_tenant",
    "last_lookup",
    "tenant",
    "wrap",
]
