"""The ``semcache demo``: a support workload replayed through LangChain, with and without cache.

Two tenants ("acme", "globex") each ask the support intents of
`semcache_demo.workload` of two chat models (a cheap, fast one and a dear, slow one), every
question twice, in a deterministic order. Everything goes through LangChain's global cache
(``set_llm_cache``) set to a `SemanticCache` on Redis with the offline all-MiniLM-L6-v2
embeddings. For every request the demo records whether the cache served it (exact or
semantic) or the model answered, how long it took, what the model would have taken, the
tokens and the money a hit saved, and whether a served answer was wrong (an answer to
another question). `run_demo` prints a table per tenant and returns a `DemoReport` with
every number, for tests and notebooks.

Example:
    >>> report = run_demo(latency=0.0, intents=8)  # doctest: +SKIP
    >>> report.tally().hit_rate  # doctest: +SKIP
    0.72
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from langchain_core.globals import get_llm_cache, set_llm_cache
from redis.backoff import NoBackoff
from redis.retry import Retry
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from langchain_semcache import SemanticCache
from semcache_core.config import build_config, check_tenant_id, redacted_url
from semcache_core.embedded import start_embedded_redis
from semcache_core.embedding import SentenceTransformerEmbedder, minilm
from semcache_core.errors import BackendUnavailableError, ConfigurationError
from semcache_core.tenancy import tenant

from .langchain_fakes import FakeSupportChatModel
from .workload import INTENTS, MODEL_PRICES, WorkloadItem, answer_for, replay

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_LATENCY",
    "DEFAULT_THRESHOLD",
    "MODELS",
    "PRICES",
    "TENANTS",
    "DemoReport",
    "Price",
    "RequestRecord",
    "StreamTally",
    "render_report",
    "run_demo",
]

DEFAULT_THRESHOLD = 0.85
"""Calibrated on the workload with all-MiniLM-L6-v2: the closest questions of two different
intents ("How do I deactivate my account?" / "How do I delete my account?") reach 0.819, so
0.85 serves no wrong answer with a margin of 0.03, while most paraphrases still hit."""

DEFAULT_LATENCY = 0.35
"""Seconds the small model takes per call; the large one takes twice as long."""

DEFAULT_CONCURRENCY = 4
"""Requests in flight per (tenant, model) stream; 1 replays each stream strictly in order."""

TENANTS: tuple[str, ...] = ("acme", "globex")
MODELS: tuple[str, ...] = ("support-small", "support-large")
_LATENCY_FACTOR = {"support-small": 1.0, "support-large": 2.0}
_REPEATS = 2

Outcome = Literal["exact", "semantic", "miss"]


@dataclass(frozen=True)
class Price:
    """What a model charges, in USD per million tokens (illustrative, not a real price list)."""

    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for a call with these token counts."""
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1_000_000


PRICES: dict[str, Price] = {name: Price(*usd) for name, usd in MODEL_PRICES.items()}
"""Illustrative prices of the two fake models (`semcache_demo.workload.MODEL_PRICES`, which
the demo also gives the engine)."""


@dataclass(frozen=True)
class RequestRecord:
    """One question asked in the demo and what happened to it.

    Attributes:
        tenant: who asked.
        model: the model asked.
        index: position of the question in its (tenant, model) stream.
        intent_id: the workload intent the question belongs to.
        question: the question text.
        first_ask: first question of its intent in this stream.
        outcome: ``"exact"`` or ``"semantic"`` (served by the cache) or ``"miss"``.
        similarity: similarity the cache reported for a hit, else ``None``.
        seconds: measured wall time of ``ainvoke``, cache included.
        provider_seconds: what the call costs the provider without a cache.
        input_tokens: input tokens of the answer returned (a hit: of the cached call).
        output_tokens: output tokens of the answer returned.
        total_tokens: input plus output tokens.
        wrong: a served answer that is not the answer to this question.
        started: when the request started, in seconds since the replay began.
        finished: when it finished, likewise.
    """

    tenant: str
    model: str
    index: int
    intent_id: str
    question: str
    first_ask: bool
    outcome: Outcome
    similarity: float | None
    seconds: float
    provider_seconds: float
    input_tokens: int
    output_tokens: int
    total_tokens: int
    wrong: bool
    started: float
    finished: float

    @property
    def hit(self) -> bool:
        """True when the cache answered."""
        return self.outcome != "miss"


@dataclass(frozen=True)
class StreamTally:
    """Totals over a set of requests: one (tenant, model) stream, a tenant, or everything.

    Attributes:
        tenant: the tenant, or ``"all"``.
        model: the model, or ``"all"``.
        requests: questions asked.
        exact_hits: served by the exact layer.
        semantic_hits: served by the semantic layer.
        misses: answered by the model.
        wrong_serves: hits whose answer belongs to another question.
        seconds_with_cache: measured seconds, summed over requests.
        seconds_without_cache: provider seconds every request would have paid, summed.
        tokens_saved: total tokens of the answers the cache served.
        cost_saved_usd: what those tokens would have cost at `PRICES`.
    """

    tenant: str
    model: str
    requests: int = 0
    exact_hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    wrong_serves: int = 0
    seconds_with_cache: float = 0.0
    seconds_without_cache: float = 0.0
    tokens_saved: int = 0
    cost_saved_usd: float = 0.0

    @classmethod
    def of(cls, records: Iterable[RequestRecord], *, tenant: str, model: str) -> StreamTally:
        """Tally ``records`` under the given labels."""
        counts = {"exact": 0, "semantic": 0, "miss": 0}
        requests = wrong = tokens = 0
        with_cache = without_cache = cost = 0.0
        for r in records:
            requests += 1
            counts[r.outcome] += 1
            wrong += r.wrong
            with_cache += r.seconds
            without_cache += r.provider_seconds
            if r.hit:
                tokens += r.total_tokens
                cost += PRICES[r.model].cost(r.input_tokens, r.output_tokens)
        return cls(
            tenant=tenant,
            model=model,
            requests=requests,
            exact_hits=counts["exact"],
            semantic_hits=counts["semantic"],
            misses=counts["miss"],
            wrong_serves=wrong,
            seconds_with_cache=with_cache,
            seconds_without_cache=without_cache,
            tokens_saved=tokens,
            cost_saved_usd=cost,
        )

    @property
    def hits(self) -> int:
        """Exact plus semantic hits."""
        return self.exact_hits + self.semantic_hits

    @property
    def hit_rate(self) -> float:
        """Hits per request (0 when there were no requests)."""
        return self.hits / self.requests if self.requests else 0.0

    @property
    def mean_latency_with_cache(self) -> float:
        """Mean measured seconds per request."""
        return self.seconds_with_cache / self.requests if self.requests else 0.0

    @property
    def mean_latency_without_cache(self) -> float:
        """Mean provider seconds per request, had every request gone to the model."""
        return self.seconds_without_cache / self.requests if self.requests else 0.0

    @property
    def time_saved(self) -> float:
        """Seconds without cache minus seconds with it, summed over requests."""
        return self.seconds_without_cache - self.seconds_with_cache


@dataclass
class DemoReport:
    """Everything one demo run measured.

    Attributes:
        redis_url: the Redis the demo used.
        namespace: the cache namespace (cleared before the replay).
        threshold: the semantic threshold.
        latency: provider seconds of the small model (the large one: twice that).
        seed: the workload seed.
        concurrency: requests in flight per stream.
        intents: how many workload intents were replayed.
        wall_seconds: wall time of the replay.
        tallies: per (tenant, model) totals.
        records: every request, in completion order.
        engine_stats: ``cache.engine.stats()`` after the replay.
        embedded: True when the demo started or reused the embedded Redis.
    """

    redis_url: str
    namespace: str
    threshold: float
    latency: float
    seed: int
    concurrency: int
    intents: int
    wall_seconds: float
    tallies: dict[tuple[str, str], StreamTally]
    records: list[RequestRecord] = field(repr=False)
    engine_stats: dict[str, Any] = field(repr=False)
    embedded: bool = False

    @property
    def tenants(self) -> list[str]:
        """The tenants, in the order they were replayed."""
        return list(dict.fromkeys(t for t, _ in self.tallies))

    @property
    def models(self) -> list[str]:
        """The model names, in the order they were replayed."""
        return list(dict.fromkeys(m for _, m in self.tallies))

    def tally(self, tenant: str | None = None, model: str | None = None) -> StreamTally:
        """Totals over the requests of one tenant and/or model (``None``: all of them)."""
        chosen = [
            r
            for r in self.records
            if (tenant is None or r.tenant == tenant) and (model is None or r.model == model)
        ]
        return StreamTally.of(chosen, tenant=tenant or "all", model=model or "all")


def run_demo(
    redis_url: str | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    latency: float = DEFAULT_LATENCY,
    seed: int = 0,
    console: Console | None = None,
    intents: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    namespace: str = "demo",
    tenants: Sequence[str] = TENANTS,
    clear: bool = True,
) -> DemoReport:
    """Replay the support workload through LangChain with semcache, print and return the tallies.

    The namespace is cleared (unless ``clear=False``), then one stream per tenant
    (``acme``, ``globex``) and model (``support-small``, ``support-large``) runs, all
    streams concurrently. Each
    stream asks every question of the workload twice (``workload.replay(seed,
    repeats=2)``) with ``model.ainvoke`` inside ``with tenant(...)``, through LangChain's
    global cache (``set_llm_cache``); the previous global cache is restored afterwards.
    Works inside a running event loop (a notebook) too: the replay then runs in a worker
    thread.

    Args:
        redis_url: Redis with the search module. ``None`` starts (or reuses) the embedded
            Redis in its default data directory; a server started here stops when this
            process exits.
        threshold: cosine similarity a semantic hit needs.
        latency: seconds the small model takes per call; the large one takes twice that.
        seed: order of the questions.
        console: where to print; default a new `rich.console.Console`.
        intents: replay only the first this many of the workload's intents (faster).
        concurrency: requests in flight per stream, taken in stream order; 1 asks each
            stream strictly one question after the other.
        namespace: the cache namespace to use.
        tenants: who asks; each tenant gets one stream per model.
        clear: empty the namespace first. ``False`` replays against what earlier runs
            cached (a warm cache).

    Returns:
        The tallies and every request's record.

    Raises:
        ConfigurationError: an invalid argument, or Redis without the search module.
        BackendUnavailableError: Redis cannot be reached.
        EmbeddedRedisError: the embedded Redis could not start.
    """
    console = console if console is not None else Console()
    # Check every argument before starting or connecting to anything.
    build_config(threshold=threshold, namespace=namespace)
    if latency < 0:
        raise ConfigurationError(f"latency must be >= 0 seconds, got {latency}")
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
    n_intents = len(INTENTS) if intents is None else intents
    if not 1 <= n_intents <= len(INTENTS):
        raise ConfigurationError(f"intents must be between 1 and {len(INTENTS)}, got {intents}")
    tenants = list(dict.fromkeys(tenants))
    if not tenants:
        raise ConfigurationError("give at least one tenant")
    for tenant_id in tenants:
        check_tenant_id(tenant_id)

    embedded = redis_url is None
    if redis_url is None:
        redis_url = _embedded_redis(console)
    else:
        _check_reachable(redis_url)  # before spending seconds on loading the model
    with console.status("Loading the offline all-MiniLM-L6-v2 embeddings..."):
        # semcache's own embedder: its async path batches concurrent lookups into one
        # model call on a worker thread, so the CPU-bound model never stalls the loop.
        embeddings = _load_minilm()
    cache = SemanticCache(
        redis_url=redis_url,
        embeddings=embeddings,
        namespace=namespace,
        threshold=threshold,
        require_redis=True,  # a demo without Redis would only show misses
        prices=MODEL_PRICES,  # so the persisted totals (`semcache stats`) count the savings
    )
    try:
        if clear:
            cache.clear()
        stream = _stream(seed, n_intents)
        models = [
            FakeSupportChatModel(model_name=name, latency=latency * _LATENCY_FACTOR[name])
            for name in MODELS
        ]
        console.print(
            f"Cache: namespace {escape(repr(namespace))} on {escape(redacted_url(redis_url))}"
            f"{' (cleared)' if clear else ''}, threshold {threshold:g}, offline "
            "all-MiniLM-L6-v2 embeddings."
        )
        console.print(
            f"Replaying {len(stream)} questions ({n_intents} intents, each question asked "
            f"twice, seed {seed}) for {_plural(len(tenants), 'tenant')} x "
            f"{len(models)} models, {concurrency} in flight per stream. Model latency: "
            + ", ".join(f"{m.model_name} {m.latency:g} s" for m in models)
            + "."
        )
        previous = get_llm_cache()
        set_llm_cache(cache)
        try:
            records, wall = _run_replay(cache, tenants, models, stream, concurrency, console)
        finally:
            set_llm_cache(previous)
        stats = cache.engine.stats()
    finally:
        cache.engine.close()

    report = DemoReport(
        redis_url=redis_url,
        namespace=namespace,
        threshold=threshold,
        latency=latency,
        seed=seed,
        concurrency=concurrency,
        intents=n_intents,
        wall_seconds=wall,
        tallies={
            (t, m.model_name): StreamTally.of(
                (r for r in records if r.tenant == t and r.model == m.model_name),
                tenant=t,
                model=m.model_name,
            )
            for t in tenants
            for m in models
        },
        records=records,
        engine_stats=stats,
        embedded=embedded,
    )
    render_report(report, console)
    return report


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _embedded_redis(console: Console) -> str:
    server = start_embedded_redis()
    if server.started:
        console.print(
            f"Started the embedded Redis at {server.url} (data in "
            f"{escape(str(server.data_dir))}); it stops when this process exits."
        )
    else:
        console.print(
            f"Using the embedded Redis already running at {server.url} (pid {server.pid}, "
            f"data in {escape(str(server.data_dir))})."
        )
    return server.url


def _check_reachable(redis_url: str) -> None:
    try:
        client = redis.Redis.from_url(
            redis_url, socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"{redacted_url(redis_url)!r} is not a Redis URL ({exc}); use e.g. "
            "redis://localhost:6379/0"
        ) from exc
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise BackendUnavailableError(
            f"cannot reach Redis at {redacted_url(redis_url)} ({exc}). Start one (`semcache "
            "redis` runs an "
            "embedded server), or give no Redis URL and the demo starts the embedded one."
        ) from exc
    finally:
        client.close()


def _load_minilm() -> SentenceTransformerEmbedder:
    """`minilm`, without the weight-loading progress bar transformers would print."""
    try:
        hf_logging: Any = importlib.import_module("transformers.utils.logging")
    except ImportError:  # minilm() says what to install
        return minilm()
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return minilm()
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _stream(seed: int, n_intents: int) -> list[WorkloadItem]:
    chosen = {intent.id for intent in INTENTS[:n_intents]}
    return [item for item in replay(seed, repeats=_REPEATS) if item.intent_id in chosen]


def _run_replay(
    cache: SemanticCache,
    tenants: Sequence[str],
    models: Sequence[FakeSupportChatModel],
    stream: Sequence[WorkloadItem],
    concurrency: int,
    console: Console,
) -> tuple[list[RequestRecord], float]:
    """Run the async replay under a progress bar; in a worker thread if a loop is running."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    width = max(len(t) for t in tenants)
    with Progress(*columns, console=console) as progress:
        bars = {
            (t, m.model_name): progress.add_task(
                f"{escape(t):<{width}}  {m.model_name}", total=len(stream)
            )
            for t in tenants
            for m in models
        }

        def advance(tenant_id: str, model: str) -> None:
            progress.advance(bars[(tenant_id, model)])

        def replay_all() -> tuple[list[RequestRecord], float]:
            return asyncio.run(_replay_all(cache, tenants, models, stream, concurrency, advance))

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return replay_all()
        # A notebook's loop runs in this thread; asyncio.run needs a thread of its own.
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="semcache-demo") as pool:
            return pool.submit(replay_all).result()


async def _replay_all(
    cache: SemanticCache,
    tenants: Sequence[str],
    models: Sequence[FakeSupportChatModel],
    stream: Sequence[WorkloadItem],
    concurrency: int,
    advance: Callable[[str, str], None],
) -> tuple[list[RequestRecord], float]:
    records: list[RequestRecord] = []
    origin = time.perf_counter()

    async def ask(
        tenant_id: str, model: FakeSupportChatModel, index: int, item: WorkloadItem
    ) -> None:
        started = time.perf_counter()
        message = await model.ainvoke(item.question)
        finished = time.perf_counter()
        marker = message.response_metadata.get("semcache") or {}
        outcome: Outcome = marker.get("layer") or "miss"
        usage = message.usage_metadata
        records.append(
            RequestRecord(
                tenant=tenant_id,
                model=model.model_name,
                index=index,
                intent_id=item.intent_id,
                question=item.question,
                first_ask=item.is_first_ask,
                outcome=outcome,
                similarity=marker.get("similarity"),
                seconds=finished - started,
                provider_seconds=model.latency,
                input_tokens=usage["input_tokens"] if usage else 0,
                output_tokens=usage["output_tokens"] if usage else 0,
                total_tokens=usage["total_tokens"] if usage else 0,
                # A hit must carry this question's answer; anything else is a wrong serve.
                wrong=outcome != "miss" and message.text != answer_for(item.question),
                started=started - origin,
                finished=finished - origin,
            )
        )
        advance(tenant_id, model.model_name)

    async def run_stream(tenant_id: str, model: FakeSupportChatModel) -> None:
        questions = iter(enumerate(stream))  # shared: workers take questions in stream order

        async def worker() -> None:
            with tenant(tenant_id):
                for index, item in questions:
                    await ask(tenant_id, model, index, item)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    try:
        await asyncio.gather(*(run_stream(t, m) for t in tenants for m in models))
    finally:
        await cache.engine.aclose()  # this loop's connection pool must not outlive it
    return records, time.perf_counter() - origin


_WIDE_HEADERS = (
    "Model",
    "Requests",
    "Exact\nhits",
    "Semantic\nhits",
    "Misses",
    "Wrong\nserves",
    "Hit\nrate",
    "Latency\ncached",
    "Latency\nuncached",
    "Tokens\nsaved",
    "Cost\nsaved",
)
_NARROW_HEADERS = (
    "Model",
    "Reqs",
    "Exact",
    "Sem.",
    "Miss",
    "Wrong",
    "Hit\nrate",
    "Latency\ncached",
    "Latency\nno cache",
    "Tokens\nsaved",
    "Cost\nsaved",
)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _row(tally: StreamTally, label: str) -> list[str]:
    wrong = f"[bold red]{tally.wrong_serves}[/]" if tally.wrong_serves else "0"
    return [
        label,
        f"{tally.requests:,}",
        f"{tally.exact_hits:,}",
        f"{tally.semantic_hits:,}",
        f"{tally.misses:,}",
        wrong,
        f"{tally.hit_rate:.1%}",
        _ms(tally.mean_latency_with_cache),
        _ms(tally.mean_latency_without_cache),
        f"{tally.tokens_saved:,}",
        f"${tally.cost_saved_usd:,.4f}",
    ]


def render_report(report: DemoReport, console: Console | None = None) -> None:
    """Print a table per tenant and a one-line summary of ``report``.

    Args:
        report: from `run_demo`.
        console: where to print; default a new `rich.console.Console`.
    """
    console = console if console is not None else Console()
    # Compact headers let the table fit an 80-column terminal.
    headers = _WIDE_HEADERS if console.width >= 92 else _NARROW_HEADERS
    for t in report.tenants:
        table = Table(
            title=f"Tenant {escape(t)}",
            title_justify="left",
            title_style="bold",
            box=box.SIMPLE_HEAD,
            padding=0,
            show_edge=False,
        )
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
        for m in report.models:
            table.add_row(*_row(report.tallies[(t, m)], m))
        table.add_section()
        table.add_row(*_row(report.tally(tenant=t), "total"), style="bold")
        console.print(table)
    prices = "; ".join(
        f"{name} ${p.input_per_million:.2f} in / ${p.output_per_million:.2f} out"
        for name, p in PRICES.items()
        if name in report.models
    )
    console.print(f"[dim]Costs use illustrative prices per 1M tokens: {prices}.[/]")
    total = report.tally()
    wrong = (
        f"[bold red]{total.wrong_serves} wrong serves[/]"
        if total.wrong_serves
        else "[green]0 wrong serves[/]"
    )
    saved = (
        f"{total.time_saved:,.1f} s of model time saved"
        if total.time_saved >= 0
        else f"the cache added {-total.time_saved:,.1f} s (the models took no time)"
    )
    console.print(
        f"[bold]Overall:[/] hit rate {total.hit_rate:.1%} of {total.requests:,} requests "
        f"({total.exact_hits:,} exact, {total.semantic_hits:,} semantic), {wrong}, {saved}, "
        f"${total.cost_saved_usd:,.2f} saved; the replay took {report.wall_seconds:.1f} s."
    )
    errors = sum(s.get("errors", 0) for s in report.engine_stats.get("tenants", {}).values())
    if errors:
        console.print(
            f"[yellow]The cache reported {errors} errors (served as misses); "
            "see the 'semcache' log.[/]"
        )
