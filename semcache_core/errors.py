"""The small exception family semcache raises.

Redis and RedisVL errors are translated at the store boundary with ``raise ... from exc``
so callers catch ours, not a third party's. Lookups never raise on a miss, and a Redis
fault during a user's LLM call is swallowed (fail-open); these exceptions reach users
only from construction, explicit administration calls, or ``require_redis=True``.
"""

from __future__ import annotations


class SemcacheError(Exception):
    """Base class of every error semcache raises on purpose."""


class ConfigurationError(SemcacheError, ValueError):
    """A setting is invalid; the message says how to fix it."""


class SchemaMismatchError(ConfigurationError):
    """An existing index was built with a different schema (version, dims, algorithm)."""


class EmbedderMismatchError(SchemaMismatchError):
    """The embedder's vectors do not fit the namespace's index (another model): raised
    from the first lookup or store that embeds, never served as a miss."""


class BackendUnavailableError(SemcacheError):
    """Redis could not be reached or answered with an error."""


class BackendTimeoutError(BackendUnavailableError):
    """Redis did not answer within the configured timeout."""


class DeadlineSpentError(BackendTimeoutError):
    """The user call's Redis budget (``socket_timeout`` for a lookup and its store) was
    spent by its earlier trips: this one was not started. Redis may be healthy but slow,
    so it does not open the circuit breaker."""


class PoolExhaustedError(BackendUnavailableError):
    """No pooled connection came free within ``pool_timeout``: this process is busier
    than its pool (``max_connections``), Redis itself may be healthy, so it does not
    open the circuit breaker."""


class BackendRefusedError(BackendUnavailableError):
    """Redis answered with an error (out of memory, a read-only replica, a wrong type):
    it is up, so a refused write must not open the circuit breaker."""


class IndexMissingError(BackendRefusedError):
    """The namespace's index is gone (Redis restarted empty, FLUSHALL, failover); the
    engine sets it up again on the next call."""


class SerializationError(SemcacheError):
    """A payload could not be encoded, or a stored entry could not be decoded."""


class EmbeddedRedisError(SemcacheError):
    """The embedded Redis server could not be found or started; the message says why."""
