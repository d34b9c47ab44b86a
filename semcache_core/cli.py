"""The ``semcache`` command line: ``redis``, ``stats``, ``invalidate``, ``export``,
``import``, ``metrics``, ``policy show|set|reset``, ``calibrate``, and the commands
installed packages add through the ``semcache.commands`` entry points (`cli_base`), such
as ``semcache demo`` from `semcache_demo`.

Errors a user can fix (any `SemcacheError`) print as one red line and exit with code 1;
``semcache calibrate`` exits with 2 when it has no recommendation (as do usage errors);
Ctrl-C exits with 130. This module imports no LLM framework and no plugin by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .cli_base import COMMANDS_GROUP
from .cli_base import Command as _Command
from .cli_base import Group as _Group
from .cli_base import guarded as _guarded
from .errors import BackendUnavailableError, ConfigurationError

if TYPE_CHECKING:
    from rich.table import Table

    from .engine import CacheEngine
    from .tenant_policy import TenantPolicy

__all__ = ["app"]


app = typer.Typer(
    name="semcache",
    cls=_Group,
    help="Tenant-isolated exact and semantic caching of LLM answers in Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command(cls=_Command)
def redis(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data directory (AOF, log, server.json). Default: $SEMCACHE_DATA_DIR, else "
            "the user data directory of semcache.",
            file_okay=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", help="TCP port on 127.0.0.1. Default: a free one.", min=1, max=65535
        ),
    ] = None,
) -> None:
    """Run the embedded Redis (with RediSearch) in the foreground until Ctrl-C.

    If a server is already running on the data directory, it is reused and left running.
    """
    from .embedded import run_foreground

    code = _guarded(lambda: run_foreground(data_dir, port=port))
    if code:
        raise typer.Exit(code)


def _add_installed_commands(target: typer.Typer) -> None:
    """Add the commands of installed packages: each entry point of the ``semcache.commands``
    group names a ``register(app)`` that adds its commands (`cli_base`). One that fails to
    load is skipped with one line on stderr; the commands here keep working.
    """
    from importlib.metadata import entry_points

    for entry in entry_points(group=COMMANDS_GROUP):
        try:
            entry.load()(target)
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            Console(stderr=True, soft_wrap=True).print(
                f"[yellow]semcache: skipped the commands of {escape(entry.value)} "
                f"({escape(reason)}).[/]"
            )


# Here, so that they are listed after `redis` and before the operations (`semcache demo`).
_add_installed_commands(app)


# -- tenant policies and calibration ---------------------------------------------------------
policy_app = typer.Typer(
    cls=_Group,
    help="Show or change tenants' serving policies (stored in Redis).",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")

RedisUrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="SEMCACHE_REDIS_URL",
        help="Redis with the search module. Default: the embedded Redis of "
        "$SEMCACHE_DATA_DIR (or the user data directory), as `semcache redis` and "
        "`semcache demo` run it.",
        show_default=False,
    ),
]
NamespaceOption = Annotated[
    str, typer.Option("--namespace", envvar="SEMCACHE_NAMESPACE", help="Cache namespace.")
]


def _resolve_url(redis_url: str | None) -> str:
    """The URL given, else the embedded server's: the running one (its ``server.json``),
    or, when only its data is left (after ``semcache demo``), one started for this command.
    """
    if redis_url:
        return redis_url
    from .embedded import find_running, has_data, start_embedded_redis

    running = find_running()
    if running is not None:
        return running.url
    if has_data():
        server = start_embedded_redis()  # stops when this command exits
        Console(stderr=True, soft_wrap=True).print(
            f"[dim]Started the embedded Redis on {escape(str(server.data_dir))} for this "
            "command.[/]"
        )
        return server.url
    raise ConfigurationError(
        "no Redis to talk to: no --redis-url or SEMCACHE_REDIS_URL given and no embedded "
        "Redis found; start one with `semcache redis` (or `semcache demo`), or pass "
        "--redis-url redis://HOST:PORT/0"
    )


def _admin_engine(redis_url: str, namespace: str, dims: int | None = None) -> CacheEngine:
    """An engine for administration: no index checks, patient timeouts, one attempt per
    command (a person at a terminal retries; a silent server fails the command once)."""
    from .engine import CacheEngine

    engine = CacheEngine(
        redis_url,
        namespace=namespace,
        validate=False,
        socket_timeout=10.0,
        connect_timeout=5.0,
        admin_timeout=10.0,
        admin_retries=0,
        dims=dims,
    )
    if engine.probe_fault is not None:  # unreachable: say so now, without a second try
        fault = engine._unreachable(engine.probe_fault)
        engine.close()
        raise fault
    return engine


_POLICY_HEADERS = {
    "exact": "exact",
    "semantic": "semantic",
    "threshold": "threshold",
    "promotion_threshold": "promote\nat",
    "ttl": "ttl",
    "target_error": "target\nerror",
    "auto_promote": "auto\npromote",
    "min_samples": "min\nsamples",
}
_OVERRIDE_MARK = "*"


def _policy_table(policies: dict[str, TenantPolicy], title: str) -> Table:
    """Effective policies, one row per tenant, readable at 80 columns; a tenant's own
    overrides carry a ``*`` (visible when piped, unlike bold or dim)."""
    from rich import box
    from rich.table import Table

    from .tenant_policy import POLICY_FIELDS

    table = Table(
        title=title,
        title_justify="left",
        caption=f"{_OVERRIDE_MARK} the tenant's override; other values are the defaults.",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        show_edge=False,
    )
    table.add_column("tenant", overflow="fold")
    for name in POLICY_FIELDS:
        table.add_column(_POLICY_HEADERS.get(name, name), justify="right", no_wrap=True)
    for tenant_id, pol in policies.items():
        row = [escape(tenant_id)]
        for name in POLICY_FIELDS:
            value = getattr(pol, name)
            text = (
                "-"
                if value is None
                else ("on" if value else "off")
                if isinstance(value, bool)
                else f"{value:g}"
                if isinstance(value, float)
                else str(value)
            )
            if name in pol.model_fields_set:
                row.append(f"[bold]{text}{_OVERRIDE_MARK}[/]")
            else:
                row.append(f"[dim]{text}[/] ")  # the space keeps the columns aligned
        table.add_row(*row)
    return table


@policy_app.command("show", cls=_Command)
def policy_show(
    tenant: Annotated[
        str | None, typer.Option(help="One tenant (default: every tenant with overrides).")
    ] = None,
    redis_url: RedisUrlOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Show effective policies; a * marks the tenant's overrides, the rest are defaults."""

    def run() -> None:
        engine = _admin_engine(_resolve_url(redis_url), namespace)
        try:
            policies = {tenant: engine.get_policy(tenant)} if tenant else engine.policies()
        finally:
            engine.close()
        console = Console()
        if not policies:
            console.print("No tenant has a stored policy; every tenant uses the defaults.")
            return
        console.print(_policy_table(policies, f"Policies in namespace {escape(namespace)}"))

    _guarded(run)


@policy_app.command("set", cls=_Command)
def policy_set(
    tenant: Annotated[str, typer.Option(help="Whose policy to change.")],
    semantic: Annotated[
        str | None, typer.Option(help="off | shadow | live.", show_default=False)
    ] = None,
    exact: Annotated[
        bool | None,
        typer.Option("--exact/--no-exact", help="The exact layer.", show_default=False),
    ] = None,
    threshold: Annotated[float | None, typer.Option(show_default=False)] = None,
    promotion_threshold: Annotated[
        float | None,
        typer.Option(help="Shadow candidates at or above this are served.", show_default=False),
    ] = None,
    ttl: Annotated[
        float | None, typer.Option(help="Entry TTL, seconds.", show_default=False)
    ] = None,
    target_error: Annotated[float | None, typer.Option(show_default=False)] = None,
    auto_promote: Annotated[
        bool | None, typer.Option("--auto-promote/--no-auto-promote", show_default=False)
    ] = None,
    min_samples: Annotated[int | None, typer.Option(show_default=False)] = None,
    redis_url: RedisUrlOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Change some fields of a tenant's policy (the change is audited)."""
    given = {
        "semantic": semantic,
        "exact": exact,
        "threshold": threshold,
        "promotion_threshold": promotion_threshold,
        "ttl": ttl,
        "target_error": target_error,
        "auto_promote": auto_promote,
        "min_samples": min_samples,
    }
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}

    def run() -> None:
        if not changes:
            raise ConfigurationError("say what to change, e.g. --semantic shadow")
        engine = _admin_engine(_resolve_url(redis_url), namespace)
        try:
            pol = engine.set_policy(tenant, **changes)
        finally:
            engine.close()
        Console().print(
            _policy_table({tenant: pol}, "Stored; every process applies it within seconds")
        )

    _guarded(run)


@policy_app.command("reset", cls=_Command)
def policy_reset(
    tenant: Annotated[str, typer.Option(help="Whose overrides to drop.")],
    redis_url: RedisUrlOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Drop a tenant's overrides: the defaults apply again."""

    def run() -> None:
        engine = _admin_engine(_resolve_url(redis_url), namespace)
        try:
            engine.reset_policy(tenant)
        finally:
            engine.close()
        Console().print(f"{escape(tenant)}: overrides dropped; the defaults apply.")

    _guarded(run)


@app.command(cls=_Command)
def calibrate(
    tenant: Annotated[str, typer.Option(help="Whose shadow verdicts to use.")],
    apply: Annotated[
        bool,
        typer.Option(
            "--apply/--dry-run",
            help="Store the threshold and switch the tenant to live (audited).",
        ),
    ] = False,
    redis_url: RedisUrlOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Recommend the lowest threshold whose wrong-serve bound stays under the tenant's target.

    Exits with 2 when there is no recommendation yet (too few verdicts, or no threshold
    meets the target), so scripts can tell "not yet" from an error (1).
    """

    def run() -> None:
        engine = _admin_engine(_resolve_url(redis_url), namespace)
        try:
            before = engine.get_policy(tenant)
            cal = engine.calibrate(tenant, apply=apply)
            after = engine.get_policy(tenant)
        finally:
            engine.close()
        console = Console()
        console.print(
            f"{escape(tenant)}: {cal.samples:,} verdicts; target error {cal.target_error:g} "
            f"({cal.confidence:.0%} one-sided {cal.method} bound), min samples "
            f"{cal.min_samples:,}."
        )
        if cal.threshold is None:
            console.print(f"[yellow]No threshold recommended:[/] {escape(cal.reason)}.")
            raise typer.Exit(2)
        console.print(
            f"Recommended threshold [bold]{cal.threshold:.4f}[/]: {cal.served:,} would-be hits, "
            f"{cal.wrong:,} wrong (observed {cal.observed_error:.2%}, bound "
            f"{cal.upper_bound:.2%}). {escape(cal.reason)}."
        )
        if apply and after != before:
            console.print(
                f"Applied: {before.semantic} at {before.threshold:g} -> {after.semantic} at "
                f"{after.threshold:.4f} (audited)."
            )
        elif apply:
            console.print("Already applied; nothing changed.")
        else:
            console.print("Dry run: pass --apply to switch the tenant to live at this threshold.")

    _guarded(run)


# -- operations ----------------------------------------------------------------------------
@app.command(cls=_Command)
def stats(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    redis_url: RedisUrlOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Totals per tenant, summed over every process and restart (persisted in Redis)."""
    from rich.table import Table

    def run() -> None:
        engine = _admin_engine(_resolve_url(redis_url), namespace)
        try:
            snap = engine.stats(tenant)
        finally:
            engine.close()
        if snap.get("totals") is None:
            raise BackendUnavailableError(snap.get("totals_error") or "cannot read totals")
        totals: dict[str, dict[str, Any]] = snap["totals"]
        console = Console()
        if not totals:
            console.print(f"No requests recorded in namespace {escape(namespace)} yet.")
            return
        from rich import box

        shadow = any(v["promoted"] or v["shadow_hits"] for v in totals.values())
        columns = ["reqs", "exact", "sem."] + (["prom.", "shadow"] if shadow else [])
        columns += ["guard", "miss", "err", "hit\nrate", "tokens\nsaved", "USD\nsaved", "entries"]
        table = Table(
            title=f"Namespace {escape(namespace)}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            collapse_padding=True,
            show_edge=False,
        )
        table.add_column("tenant", no_wrap=True, min_width=min(32, max(map(len, totals))))
        for name in columns:
            table.add_column(name, justify="right", no_wrap=True)
        for t, v in totals.items():
            row = [escape(t), f"{v['requests']:,}", f"{v['exact_hits']:,}"]
            row.append(f"{v['semantic_hits']:,}")
            if shadow:
                row += [f"{v['promoted']:,}", f"{v['shadow_hits']:,}"]
            row += [
                f"{v['guarded']:,}",
                f"{v['misses']:,}",
                f"{v['errors']:,}",
                f"{v['hit_rate']:.1%}",
                f"{v['tokens_saved']:,}",
                f"${v['cost_saved_usd']:,.4f}",
                f"{v.get('entries', 0):,}",
            ]
            table.add_row(*row)
        console.print(table)
        index = snap.get("index") or {}
        console.print(
            f"Index: {index.get('entries', 0):,} entries, {index.get('memory_mb', 0.0):,.2f} MB."
        )

    _guarded(run)


@app.command(cls=_Command)
def invalidate(
    tenant: Annotated[str | None, typer.Option(help="This tenant's entries.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="Entries with this tag (repeatable).")
    ] = None,
    match: Annotated[str, typer.Option(help="With several tags: any or all.")] = "any",
    older_than: Annotated[
        float | None, typer.Option(help="Entries written more than this many seconds ago.")
    ] = None,
    all_entries: Annotated[
        bool, typer.Option("--all", help="Every entry of the namespace.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --all.")] = False,
    redis_url: RedisUrlOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Delete entries (criteria combine with AND). Asks before deleting everything."""

    def run() -> None:
        if all_entries and (tenant or tag or older_than is not None):
            raise ConfigurationError("--all deletes everything: give it no other criterion")
        if all_entries and not yes:
            typer.confirm(
                f"Delete every entry of namespace {namespace!r} (all tenants)?", abort=True
            )
        engine = _admin_engine(_resolve_url(redis_url), namespace)
        try:
            removed = engine.invalidate(
                tenant=tenant,
                tags=tag or None,
                match=match,
                older_than=older_than,
                everything=all_entries,
            )
        finally:
            engine.close()
        Console().print(f"Deleted {removed:,} entries.")

    _guarded(run)


@app.command(cls=_Command)
def reindex(
    algorithm: Annotated[
        str, typer.Option(help="hnsw (large namespaces) or flat (exact, small ones).")
    ] = "hnsw",
    status: Annotated[bool, typer.Option("--status", help="Only show the index.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for Redis to index.")] = 600.0,
    redis_url: RedisUrlOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Rebuild the index as another algorithm, with no downtime (engines with
    algorithm=auto move from FLAT to HNSW by themselves as they grow)."""

    def run() -> None:
        engine = _admin_engine(_resolve_url(redis_url), namespace)
        try:
            found = engine.index_status() if status else engine.rebuild_index(algorithm, wait=wait)
        finally:
            engine.close()
        if found["generation"] is None:
            Console().print(f"Namespace {escape(namespace)} has no index yet.")
            return
        building = found["building"]
        entries = sum(e or 0 for e in found["entries"])
        Console().print(
            f"Index of {escape(namespace)}: {found['algorithm']} (generation "
            f"{found['generation']}, {found['layout']}), {entries:,} entries"
            + (f"; {building['algorithm']} being built" if building else "")
        )

    _guarded(run)


@app.command("export", cls=_Command)
def export_cmd(
    path: Annotated[Path, typer.Argument(help="JSON Lines file to write ('-' for stdout).")],
    redis_url: RedisUrlOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Write every entry (vectors included) as JSON Lines, for backup or warm-up."""
    import sys

    from rich.progress import Progress

    from .transfer import export_entries

    def run() -> None:
        engine = _admin_engine(_resolve_url(redis_url), namespace)
        err = Console(stderr=True)
        try:
            total = engine.count()
            with Progress(console=err, transient=False) as progress:
                task = progress.add_task("Exporting", total=total)

                def step(n: int) -> None:
                    progress.advance(task, n)

                if str(path) == "-":
                    n = export_entries(engine, sys.stdout, step)
                else:
                    with path.open("w", encoding="utf-8") as out:
                        n = export_entries(engine, out, step)
        finally:
            engine.close()
        err.print(f"Exported {n:,} entries from namespace {escape(namespace)}.")

    _guarded(run)


@app.command("import", cls=_Command)
def import_cmd(
    path: Annotated[Path, typer.Argument(help="JSON Lines file from `semcache export`.")],
    redis_url: RedisUrlOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Load exported entries into a namespace (its index must have the same dimensions)."""
    from rich.progress import Progress

    from .transfer import import_entries

    def run() -> None:
        if not path.is_file():
            raise ConfigurationError(f"{path} is not a file")
        try:
            lines = path.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise ConfigurationError(
                f"{path}: line {line} is not UTF-8, so not a `semcache export` file"
            ) from None
        dims = _export_dims(lines)
        engine = _admin_engine(_resolve_url(redis_url), namespace, dims=dims)
        try:
            with Progress(console=Console(stderr=True)) as progress:
                task = progress.add_task("Importing", total=len(lines))
                n = import_entries(engine, lines, lambda k: progress.advance(task, k))
        finally:
            engine.close()
        Console().print(f"Imported {n:,} entries into namespace {escape(namespace)}.")

    _guarded(run)


def _export_dims(lines: list[str]) -> int | None:
    """Dimensions of the first exported vector (float32), to create a missing index."""
    import base64
    import json

    for line in lines:
        if not line.strip():
            continue
        try:
            vector = json.loads(line).get("fields", {}).get("vector")
        except (ValueError, AttributeError):
            return None  # import_entries says which line is wrong
        if isinstance(vector, dict) and "b64" in vector:
            return len(base64.b64decode(vector["b64"])) // 4
    return None


@app.command(cls=_Command)
def metrics(
    port: Annotated[
        int, typer.Option(help="TCP port (0: a free one, printed at start).", min=0, max=65535)
    ] = 9464,
    host: Annotated[
        str,
        typer.Option(help="Address to bind; 0.0.0.0 accepts scrapes from other hosts."),
    ] = "127.0.0.1",
    tenant_label: Annotated[
        str,
        typer.Option(
            help="Label series by tenant: off (one series per namespace), digest (the "
            "tenant's digest) or id (the raw tenant id; mind cardinality and privacy).",
        ),
    ] = "off",
    redis_url: RedisUrlOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Serve the persisted totals: Prometheus /metrics and JSON /metrics/cache/statistics.

    JSON routes: /metrics/cache/statistics (combined) and /metrics/cache/statistics/exact
    or /semantic; add ?tenant=ID for one tenant. Runs until Ctrl-C.
    """
    import time

    from prometheus_client import CollectorRegistry

    from .http import STATISTICS_PATH, serve_exporter
    from .prometheus import TotalsCollector, tenant_label_mode

    def run() -> None:
        mode = tenant_label_mode(tenant_label)
        engine = _admin_engine(_resolve_url(redis_url), namespace)
        snap = engine.stats(totals=True)
        if snap.get("totals") is None:  # fail now, in one line, not with totals_up 0
            raise BackendUnavailableError(snap.get("totals_error") or "cannot read the totals")
        registry = CollectorRegistry()
        registry.register(TotalsCollector(engine, tenant_label=mode))
        try:
            server, _ = serve_exporter(engine, host, port, registry)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another "
                "--port or --host"
            ) from exc
        bound_host, bound_port = server.server_address[:2]
        base = f"http://{_url_host(str(bound_host))}:{bound_port}"
        Console(soft_wrap=True).print(
            f"Serving totals of namespace {escape(namespace)} on {base}/metrics and "
            f"{base}{STATISTICS_PATH} (Ctrl-C stops)."
        )
        try:
            while True:
                time.sleep(3600)
        finally:
            server.shutdown()
            server.server_close()
            engine.close()

    _guarded(run)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def main() -> None:
    """Run the CLI (what the ``semcache`` console script calls)."""
    app()


if __name__ == "__main__":
    main()
