"""semcache_core: tenant-isolated exact and semantic LLM caching on Redis.

The engine imports no LLM framework; `langchain_semcache` and `llamaindex_semcache` are
thin adapters over it.
"""

from .config import CacheConfig
from .embedded import EmbeddedRedis, start_embedded_redis
from .embedding import CachedEmbedder, CallableEmbedder, Embedder, as_embedder, minilm
from .engine import CacheEngine, LookupResult
from .errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    EmbeddedRedisError,
    SchemaMismatchError,
    SemcacheError,
    SerializationError,
)
from .policy import Outcome
from .request import CacheRequest
from .tenancy import cache_context, current_tenant, tenant

__all__ = [
    "BackendTimeoutError",
    "BackendUnavailableError",
    "CacheConfig",
    "CacheEngine",
    "CacheRequest",
    "CachedEmbedder",
    "CallableEmbedder",
    "ConfigurationError",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "Embedder",
    "LookupResult",
    "Outcome",
    "SchemaMismatchError",
    "SemcacheError",
    "SerializationError",
    "as_embedder",
    "cache_context",
    "current_tenant",
    "minilm",
    "start_embedded_redis",
    "tenant",
]

__version__ = "0.1.0"
