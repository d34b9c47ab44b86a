"""What a LangChain run tells the cache, read by a callback handler LangChain adds itself.

``BaseCache.lookup`` sees only ``(prompt, llm_string)``. Everything else a run knows
reaches callback handlers: the run's ``metadata`` (inherited by every child run, so a
LangGraph node's model call sees its graph's), the structured-output format
(``options["ls_structured_output_format"]``, which LangChain removes from the call's
kwargs and so from the ``llm_string``), and the inputs of a prompt template run
(``run_type="prompt"``). `install` registers one handler with LangChain's
``register_configure_hook``, so every callback manager LangChain configures includes it,
with no ``callbacks=`` from the user.

The handler runs inline (``run_inline``), in the context that then calls the cache:

* ``on_chat_model_start`` / ``on_llm_start`` put a `RunInfo` into a context variable;
  ``on_llm_end`` / ``on_llm_error`` take it out again. The cache reads it with
  `current_run`.
* A prompt template's inputs are kept by parent run: the model run that follows the
  prompt under the same parent (``prompt | model``) gets them; the parent's end drops
  them.
* A lookup that made this call the coalescing leader of its key (``coalesce`` on) is
  kept on the run (`hold_lease`). When the run ends with ``on_llm_error`` (the provider
  raised), or ends without the answer stored, the handler hands it to
  `CacheEngine.abandon`: the key's waiters stop waiting at once and one of them leads the
  retry, instead of all sitting out ``coalesce_wait`` and then calling the model each.
  LangChain's cache interface has no failure hook; its callbacks are the one place a
  cache learns that the call it missed for failed. An async run's Redis lock is released
  by a task on the run's loop (the handler runs inline and must not block it).
* A root run (``parent_run_id is None``) carries a cell that the cache writes each lookup
  into; when the root run ends, in the caller's context, the last one becomes
  `semcache_core.last_lookup`'s answer there. Without it a lookup inside a chain (LCEL
  runs each step in a copied context) would be invisible to the caller, e.g. after
  ``model.with_structured_output(Person).invoke(...)``, which returns the user's class.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook

from semcache_core import CacheEngine, LookupResult
from semcache_core.coalesce import Ticket
from semcache_core.engine import remember_lookup  # see _publish

logger = logging.getLogger("semcache")

TENANT_KEY = "semcache_tenant"
"""The run-metadata key that names the tenant: ``config={"metadata": {TENANT_KEY: id}}``."""

_MAX_TRACKED = 10_000  # prompt inputs / runs kept at once, whatever happens to run ends


@dataclass(eq=False)
class RunInfo:
    """What the current chat-model or LLM run tells the cache.

    Attributes:
        run_id: LangChain's id of the model run.
        has_tenant: the run's metadata names a tenant (under `TENANT_KEY`).
        tenant: that value, unvalidated (the cache validates it when it uses it).
        structured: the call is structured output (``with_structured_output``).
        prompt_inputs: the inputs of the prompt template run before this model run
            under the same parent, if any.
    """

    run_id: UUID
    has_tenant: bool = False
    tenant: Any = None
    structured: bool = False
    prompt_inputs: Mapping[str, Any] | None = None
    previous: RunInfo | None = field(default=None, repr=False)
    ended: bool = field(default=False, repr=False)
    leases: list[_Lease] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class _Lease:
    """A coalescing leadership a lookup of this run took (see `hold_lease`)."""

    engine: CacheEngine
    result: LookupResult
    is_async: bool

    def settle(self, failed: bool) -> None:
        """End the leadership if the call failed or its answer was not stored (a stored
        answer ended it already: no I/O then)."""
        ticket = self.result.lease
        if not failed and not (isinstance(ticket, Ticket) and ticket.live):
            return
        if self.is_async:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                task = loop.create_task(self._aabandon())
                _SETTLING.add(task)
                task.add_done_callback(_SETTLING.discard)
                return
        try:
            self.engine.abandon(self.result)
        except Exception as exc:  # a callback must never fail the user's call
            self.engine.report_error("coalesce", exc)

    async def _aabandon(self) -> None:
        try:
            await self.engine.aabandon(self.result)
        except Exception as exc:
            self.engine.report_error("coalesce", exc)


# Tasks releasing async leases: referenced until done (the loop holds tasks weakly).
_SETTLING: set[asyncio.Task[None]] = set()


class _Cell:
    """The latest lookup made under one root run (shared by its copied contexts)."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: LookupResult | None = None


_CURRENT: ContextVar[RunInfo | None] = ContextVar("semcache_langchain_run", default=None)
_ROOT: ContextVar[_Cell | None] = ContextVar("semcache_langchain_root", default=None)


def current_run() -> RunInfo | None:
    """The innermost chat-model / LLM run in progress in this context, or ``None``."""
    return _CURRENT.get()


def hold_lease(engine: CacheEngine, result: LookupResult, *, is_async: bool) -> bool:
    """Keep a lookup's coalescing leadership on the current model run, to be ended when
    the run fails (or ends without a store). ``False`` outside a run: nothing will."""
    run = _CURRENT.get()
    if run is None or run.ended or result.lease is None:
        return False
    run.leases.append(_Lease(engine, result, is_async))
    return True


def note_lookup(result: LookupResult) -> None:
    """Remember ``result`` as the latest lookup of the enclosing root run."""
    cell = _ROOT.get()
    if cell is not None:
        cell.result = result


def _publish(result: LookupResult) -> None:
    # The core keeps the latest lookup in a context variable of its own; setting it in
    # the caller's context is exactly what a lookup made there would have done.
    remember_lookup(result)


class SemcacheRunHandler(BaseCallbackHandler):
    """Reads run metadata, structured-output options and prompt inputs for the cache.

    It never raises and never changes a run; it is added to every LangChain run by
    `install`.
    """

    run_inline = True  # same context (and task) as the model call that consults the cache

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[UUID, RunInfo] = {}
        self._prompts: OrderedDict[UUID, Mapping[str, Any]] = OrderedDict()
        self._roots: dict[UUID, tuple[_Cell, Token[_Cell | None]]] = {}

    # -- model runs ---------------------------------------------------------------------
    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        meta = metadata or {}
        options = kwargs.get("options") or {}
        with self._lock:
            inputs = self._prompts.get(parent_run_id) if parent_run_id is not None else None
        info = RunInfo(
            run_id=run_id,
            has_tenant=TENANT_KEY in meta,
            tenant=meta.get(TENANT_KEY),
            structured=bool(
                isinstance(options, Mapping) and options.get("ls_structured_output_format")
            ),
            prompt_inputs=inputs,
            previous=_CURRENT.get(),
        )
        with self._lock:
            self._runs[run_id] = info
            while len(self._runs) > _MAX_TRACKED:
                self._runs.pop(next(iter(self._runs)))
        _CURRENT.set(info)

    def _end(self, run_id: UUID, *, failed: bool = False) -> None:
        with self._lock:
            info = self._runs.pop(run_id, None)
        if info is None:
            return
        info.ended = True
        leases, info.leases = info.leases, []
        for lease in leases:
            lease.settle(failed)
        current = top = _CURRENT.get()
        while current is not None and current.ended:
            current = current.previous
        if current is not top:
            _CURRENT.set(current)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id, metadata, kwargs)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, failed=True)

    # -- chains: prompt inputs and root runs --------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id is None:
            cell = _Cell()
            token = _ROOT.set(cell)
            with self._lock:
                self._roots[run_id] = (cell, token)
        prompt_run = kwargs.get("run_type") == "prompt" and isinstance(inputs, Mapping)
        if prompt_run and parent_run_id is not None:
            with self._lock:
                self._prompts[parent_run_id] = inputs
                self._prompts.move_to_end(parent_run_id)
                while len(self._prompts) > _MAX_TRACKED:
                    self._prompts.popitem(last=False)

    def _chain_end(self, run_id: UUID) -> None:
        with self._lock:
            self._prompts.pop(run_id, None)
            root = self._roots.pop(run_id, None)
        if root is None:
            return
        cell, token = root
        try:
            _ROOT.reset(token)
        except ValueError:  # ended in another context than it started: nothing to undo
            return
        if cell.result is not None:
            _publish(cell.result)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._chain_end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._chain_end(run_id)


_HANDLER = SemcacheRunHandler()
_INSTALL_LOCK = threading.Lock()
_installed = False


def install() -> None:
    """Add the handler to every LangChain run from now on (idempotent)."""
    global _installed
    with _INSTALL_LOCK:
        if _installed:
            return
        var: ContextVar[SemcacheRunHandler | None] = ContextVar(
            "semcache_langchain_handler", default=_HANDLER
        )
        register_configure_hook(var, inheritable=True)
        _installed = True


__all__ = [
    "TENANT_KEY",
    "RunInfo",
    "SemcacheRunHandler",
    "current_run",
    "hold_lease",
    "install",
]
