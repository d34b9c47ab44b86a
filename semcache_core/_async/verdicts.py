"""Shadow verdicts, async (written once): judge a parked candidate against the fresh
answer when it is stored, and record what the judge said. `_sync/verdicts.py` is
generated from this file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..request import CacheRequest
from ..state import FLOOR_STEP, EngineState, default_text
from ..tenant_policy import TenantPolicy

if TYPE_CHECKING:
    from ..storage._async.store import AsyncStore


async def judge(
    state: EngineState,
    store: AsyncStore,
    request: CacheRequest,
    pol: TenantPolicy,
    payload: bytes,
    text: str | None,
) -> None:
    """Judge the candidate this request's lookup parked against the fresh answer,
    and record the verdict."""
    candidate = state.ledger.take(state.key(request))
    if candidate is None:
        return
    try:
        fresh = text if text is not None else default_text(payload)
        agreed = await state.judge.aagree(candidate.question, candidate.text, fresh)
        await store.add_verdict(request.tenant_token, state.verdict_fields(candidate, agreed))
        if not agreed and state.config.entry_floors and not candidate.guarded:
            evidence = state.config.floor_evidence
            await store.add_disagreement(candidate.key, candidate.similarity, evidence, FLOOR_STEP)
        state.counted_verdict(request, pol, agreed)
    except Exception as exc:
        state.fault("verdict", request, exc)
