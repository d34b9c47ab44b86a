"""`SemanticCache`: semcache as a LangChain ``BaseCache``.

Use it globally with ``set_llm_cache(SemanticCache(...))`` or per model with
``ChatX(cache=SemanticCache(...))``. The adapter only translates: LangChain's
``(prompt, llm_string)`` becomes a `CacheRequest`, generations become bytes and back.
All decisions and all Redis I/O are the engine's.
"""

from __future__ import annotations

from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.outputs import ChatGeneration, Generation

from semcache_core import CacheEngine, LookupResult
from semcache_core.errors import ConfigurationError, SerializationError
from semcache_core.request import CacheRequest
from semcache_core.tenancy import UNSET, _Unset

from .prompt import parse_prompt
from .serialization import (
    CODEC,
    decode_generations,
    encode_generations,
    generations_text,
    generations_usage,
)


class SemanticCache(BaseCache):
    """Exact and semantic LLM cache on Redis, tenant-isolated.

    Two requests share an answer only if they have the same tenant, the same
    ``llm_string`` (model and generation parameters, tools, response format), the same
    conversation before the last human message, and either the same prompt (exact hit)
    or a last human message at least ``threshold`` similar (semantic hit).

    Args:
        redis_url: where Redis is (default: env ``SEMCACHE_REDIS_URL``).
        embeddings: a LangChain ``Embeddings``; without it only exact hits are served.
        namespace: one index per namespace.
        threshold: cosine similarity in [0, 1] a semantic hit needs.
        ttl: default entry TTL in seconds (``None``: never expire; ``0``: do not cache).
        tenant: serve and store for this tenant only; default: the `tenant` context,
            else the engine's default tenant.
        engine: share an existing `CacheEngine` (e.g. with LlamaIndex components);
            then pass no other engine settings.
        **settings: any other `CacheConfig` field.

    Example:
        >>> from langchain_core.globals import set_llm_cache
        >>> set_llm_cache(SemanticCache(redis_url=url, embeddings=embeddings))
        >>> with tenant("acme"):
        ...     model.invoke("How do I reset my password?")
    """

    def __init__(
        self,
        redis_url: str | None = None,
        embeddings: Any = None,
        namespace: str | None = None,
        threshold: float | None = None,
        ttl: float | _Unset | None = UNSET,
        tenant: str | None = None,
        engine: CacheEngine | None = None,
        **settings: Any,
    ) -> None:
        if engine is not None:
            given = (
                [
                    name
                    for name, value in (
                        ("redis_url", redis_url),
                        ("embeddings", embeddings),
                        ("namespace", namespace),
                        ("threshold", threshold),
                    )
                    if value is not None
                ]
                + list(settings)
                + (["ttl"] if ttl is not UNSET else [])
            )
            if given:
                raise ConfigurationError(
                    f"pass either engine= or engine settings, not both (got {given}); "
                    "configure the shared CacheEngine instead"
                )
            self.engine = engine
        else:
            self.engine = CacheEngine(
                redis_url,
                embedder=embeddings,
                namespace=namespace,
                threshold=threshold,
                ttl=ttl,
                **settings,
            )
        self.tenant = tenant

    def _request(self, prompt: str, llm_string: str) -> CacheRequest:
        parsed = parse_prompt(prompt)
        return self.engine.request(
            parsed.key,
            question=parsed.question or "",
            scope={"llm_string": llm_string, "kind": parsed.kind, "context": parsed.context},
            tenant=self.tenant,
        )

    @staticmethod
    def _served(result: LookupResult) -> list[Generation] | None:
        if not result.hit:
            return None
        generations: list[Generation] = result.value
        marker = {
            "hit": True,
            "layer": result.layer,
            "outcome": result.outcome.value,
            "tokens_saved": result.tokens_saved,
            "cost_saved_usd": round(result.cost_saved_usd, 8),
            "similarity": None if result.similarity is None else round(result.similarity, 6),
            "cached_at": result.created_at,
        }
        out: list[Generation] = []
        for gen in generations:
            if isinstance(gen, ChatGeneration):
                message = gen.message.model_copy(
                    update={
                        "response_metadata": {**gen.message.response_metadata, "semcache": marker}
                    }
                )
                gen = ChatGeneration(message=message, generation_info=gen.generation_info)
            out.append(gen)
        return out

    def _payload(self, request: CacheRequest, return_val: RETURN_VAL_TYPE) -> bytes | None:
        try:
            return encode_generations(return_val)
        except SerializationError as exc:
            self.engine.report_error("serialize", exc, tenant=request.tenant)
            return None

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Look up an answer; ``None`` on a miss or any cache fault."""
        result = self.engine.lookup(
            self._request(prompt, llm_string), decode=decode_generations, text_of=generations_text
        )
        return self._served(result)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store the model's answer; faults are counted and logged, never raised."""
        request = self._request(prompt, llm_string)
        payload = self._payload(request, return_val)
        if payload is not None:
            self.engine.store(
                request,
                payload,
                codec=CODEC,
                text=generations_text(return_val),
                usage=generations_usage(return_val, llm_string),
            )

    def clear(self, **kwargs: Any) -> None:
        """Delete entries.

        Without arguments: this cache's tenant's entries if it was given a ``tenant``,
        else every entry of the namespace. With arguments: as `CacheEngine.invalidate`
        (``tenant=``, ``tags=``, ``match=``, ``older_than=``, ``everything=``).
        """
        self.engine.invalidate(**self._clear_args(kwargs))

    def _clear_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs:
            return kwargs
        return {"tenant": self.tenant} if self.tenant is not None else {"everything": True}

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Async `lookup`: redis.asyncio and the embeddings' ``aembed_query``."""
        result = await self.engine.alookup(
            self._request(prompt, llm_string), decode=decode_generations, text_of=generations_text
        )
        return self._served(result)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Async `update`."""
        request = self._request(prompt, llm_string)
        payload = self._payload(request, return_val)
        if payload is not None:
            await self.engine.astore(
                request,
                payload,
                codec=CODEC,
                text=generations_text(return_val),
                usage=generations_usage(return_val, llm_string),
            )

    async def aclear(self, **kwargs: Any) -> None:
        """Async `clear`."""
        await self.engine.ainvalidate(**self._clear_args(kwargs))
