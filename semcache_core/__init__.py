"""semcache_core: tenant-isolated exact and semantic LLM caching on Redis.

The engine imports no LLM framework; `langchain_semcache` and `llamaindex_semcache` are
thin adapters over it, and `semcache_demo` (the ``semcache demo`` command) is built on them.
"""

from .calibration import Calibration, CurvePoint, Verdict
from .config import CacheConfig
from .core.rules import Outcome
from .embedded import EmbeddedRedis, start_embedded_redis
from .embedded_cluster import EmbeddedCluster, EmbeddedClusterNode, start_embedded_cluster
from .embedding import CachedEmbedder, CallableEmbedder, Embedder, as_embedder, minilm
from .embedding_store import DEFAULT_EMBEDDING_TTL, EmbeddingStore
from .engine import CacheEngine, LookupResult, last_lookup
from .errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    EmbeddedRedisError,
    EmbedderMismatchError,
    SchemaMismatchError,
    SemcacheError,
    SerializationError,
)
from .judges import CallableJudge, EmbeddingJudge, Judge, TextEqualityJudge, as_judge
from .pricing import Price, PriceTable, Usage
from .prometheus import PrometheusMetrics, start_metrics_server
from .request import CacheRequest
from .tenancy import cache_context, current_tenant, tenant
from .tenant_policy import TenantPolicy
from .verifiers import RuleVerifier, Verification

__all__ = [
    "DEFAULT_EMBEDDING_TTL",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "CacheConfig",
    "CacheEngine",
    "CacheRequest",
    "CachedEmbedder",
    "Calibration",
    "CallableEmbedder",
    "CallableJudge",
    "ConfigurationError",
    "CurvePoint",
    "EmbeddedCluster",
    "EmbeddedClusterNode",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "Embedder",
    "EmbedderMismatchError",
    "EmbeddingJudge",
    "EmbeddingStore",
    "Judge",
    "LookupResult",
    "Outcome",
    "Price",
    "PriceTable",
    "PrometheusMetrics",
    "RuleVerifier",
    "SchemaMismatchError",
    "SemcacheError",
    "SerializationError",
    "TenantPolicy",
    "TextEqualityJudge",
    "Usage",
    "Verdict",
    "Verification",
    "as_embedder",
    "as_judge",
    "cache_context",
    "current_tenant",
    "last_lookup",
    "minilm",
    "start_embedded_cluster",
    "start_embedded_redis",
    "start_metrics_server",
    "tenant",
]

__version__ = "0.1.0"
