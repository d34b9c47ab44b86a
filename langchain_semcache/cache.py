"""`SemanticCache`: semcache as a LangChain ``BaseCache``.

Use it globally with ``set_llm_cache(SemanticCache(...))`` or per model with
``ChatX(cache=SemanticCache(...))``. The adapter only translates: LangChain's
``(prompt, llm_string)`` becomes a `CacheRequest`, generations become bytes and back.
All decisions and all Redis I/O are the engine's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.outputs import Generation

from semcache_core import CacheEngine, LookupResult
from semcache_core.config import check_tenant_id
from semcache_core.errors import ConfigurationError, SerializationError
from semcache_core.request import CacheRequest
from semcache_core.tenancy import UNSET, _Unset, cache_context, current_context

from . import runs
from .memo import RequestMemo
from .prompt import parse_prompt
from .serialization import (
    CODEC,
    decode_generations,
    encode_generations,
    generations_text,
    generations_usage,
    served_copies,
)

# LangChain's llm_string ends with ``str(sorted(call_kwargs.items()))``; a bound
# ``response_format`` (JSON mode, JSON schema) is structured output.
_RESPONSE_FORMAT = re.compile(r"""\(['"]response_format['"], """)


def is_structured(llm_string: str, run: runs.RunInfo | None = None) -> bool:
    """Whether a LangChain call asks for structured output: a ``response_format`` in its
    ``llm_string``, or ``with_structured_output``'s marker on the run (any method,
    tool calling included)."""
    return bool(run is not None and run.structured) or bool(_RESPONSE_FORMAT.search(llm_string))


def _run_tenant(run: runs.RunInfo | None) -> str | None:
    if run is None or not run.has_tenant:
        return None
    try:
        return check_tenant_id(run.tenant)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"run metadata {runs.TENANT_KEY!r}: {exc}; pass e.g. "
            f'config={{"metadata": {{"{runs.TENANT_KEY}": "acme"}}}}'
        ) from exc


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
        tenant: serve and store for this tenant only; default: the run's metadata
            ``semcache_tenant`` (``config={"metadata": {"semcache_tenant": "acme"}}``,
            inherited by child runs), else the `tenant` context, else the engine's
            default tenant.
        question_vars: prompt-template variables that hold the user's question, in
            order of preference (e.g. ``("text", "question")``). When a model call
            follows a ``ChatPromptTemplate`` run that had one of them (``prompt |
            model``), only that variable's value is embedded and compared; the
            template around it must match exactly. Off by default; an explicit
            ``cache_context(question=...)`` wins.
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
        question_vars: Sequence[str] = (),
        **settings: Any,
    ) -> None:
        if isinstance(question_vars, str) or not all(
            isinstance(v, str) and v for v in question_vars
        ):
            raise ConfigurationError(
                f"question_vars must be a sequence of variable names, got {question_vars!r}"
            )
        if tenant is not None:
            check_tenant_id(tenant)
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
        self.question_vars = tuple(question_vars)
        self._requests = RequestMemo()
        runs.install()

    def _declared_question(self, run: runs.RunInfo | None) -> str | None:
        """The value of the first `question_vars` variable of the prompt template run
        that fed this model call, unless the caller declared the question already."""
        if not self.question_vars or run is None or run.prompt_inputs is None:
            return None
        if current_context().question is not None:
            return None
        for name in self.question_vars:
            value = run.prompt_inputs.get(name)
            if isinstance(value, str) and value.strip():
                return value
        return None

    def _request(self, prompt: str, llm_string: str) -> CacheRequest:
        """The request for a LangChain call, built once per distinct call (`RequestMemo`):
        LangChain's lookup and the update after its miss, and every repeat of a
        prompt, share one request, its digests and its embedding."""
        run = runs.current_run()
        tenant = self.tenant if self.tenant is not None else _run_tenant(run)
        structured = run is not None and run.structured
        question = self._declared_question(run)
        memo_key = self._requests.key(prompt, llm_string, tenant, structured, question)
        request = self._requests.get(memo_key)
        if request is not None:
            return request
        parsed = parse_prompt(prompt)
        kind = "structured" if structured or is_structured(llm_string) else parsed.kind
        with cache_context(question=question) if question is not None else nullcontext():
            request = self.engine.request(
                parsed.key,
                question=parsed.question or "",
                scope={"llm_string": llm_string, "kind": parsed.kind, "context": parsed.context},
                tenant=tenant,
                kind=kind,
            )
        self._requests.put(memo_key, request)
        return request

    def _looked_up(self, result: LookupResult, *, is_async: bool) -> list[Generation] | None:
        runs.note_lookup(result)
        if result.leads:  # this call leads its key: its run's failure must end that
            runs.hold_lease(self.engine, result, is_async=is_async)
        return self._served(result)

    @staticmethod
    def _served(result: LookupResult) -> list[Generation] | None:
        if not result.hit:
            return None
        marker = {
            "hit": True,
            "layer": result.layer,
            "outcome": result.outcome.value,
            "tokens_saved": result.tokens_saved,
            "cost_saved_usd": round(result.cost_saved_usd, 8),
            "similarity": None if result.similarity is None else round(result.similarity, 6),
            "cached_at": result.created_at,
        }
        # The decoded value is shared (an L1 copy, the decode memo): serve copies.
        return served_copies(result.value, marker)

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
        return self._looked_up(result, is_async=False)

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
        return self._looked_up(result, is_async=True)

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
