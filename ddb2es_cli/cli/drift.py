"""`ddb2es drift`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ddb2es_cli.checkpoint import write_private_text
from ddb2es_cli.cli.common import (
    Bars,
    Table,
    app_of,
    confirm,
    emit,
    escape,
    failures_option,
    make_clients,
    max_rcu_option,
    output_options,
    print_failures,
    segments_option,
    tables_argument,
)
from ddb2es_cli.errors import ExitStatus

if TYPE_CHECKING:
    from rich.console import Console

    from ddb2es_cli.drift.options import CountMode


@click.command()
@tables_argument
@segments_option
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Items drawn at random and compared with their documents field by field.",
)
@click.option(
    "--orphans",
    type=click.IntRange(min=0),
    default=None,
    help="Documents drawn at random from each index and looked up in the table "
    "(default: the sample size).",
)
@click.option("--seed", type=int, default=None, help="Random seed (reported; repeat a run).")
@click.option(
    "--counts",
    type=click.Choice(["exact", "estimate"]),
    default="exact",
    show_default=True,
    help="exact: a key-only scan of every item (consumes read capacity); estimate: the "
    "table's ItemCount, which AWS refreshes only about every 6 hours.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Compare every key of both sides (scans the table, scrolls the indices).",
)
@click.option("--refresh", is_flag=True, help="Refresh the indices before counting.")
@click.option(
    "--tolerance",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Documents of difference accepted per index and findings per table.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Re-read drifted items (consistent GetItem) and rewrite or delete their documents.",
)
@click.option("--dry-run", is_flag=True, help="List what --repair would change; write nothing.")
@click.option("--yes", is_flag=True, help="Repair without asking (needed when not interactive).")
@max_rcu_option
@failures_option("ddb2es-drift-failures.ndjson", "documents the repair could not write")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report as JSON to this file.",
)
@output_options
@click.pass_context
def drift(
    ctx: click.Context,
    tables: tuple[str, ...],
    all_tables: bool,
    sample: int,
    orphans: int | None,
    seed: int | None,
    counts: CountMode,  # click.Choice checks it
    full: bool,
    refresh: bool,
    tolerance: int,
    repair: bool,
    dry_run: bool,
    yes: bool,
    segments: int | None,
    max_rcu: float | None,
    failures_path: Path,
    report_path: Path | None,
    json_output: bool,
    quiet: bool,
) -> None:
    """Check that the indices are still true to the tables; --repair makes them so.

    Counts per index (exact by default: a key-only scan that consumes read capacity),
    sampled items compared field by field, documents drawn from each index looked up in the
    table (orphans), or with --full every key of both sides. Every index the table feeds is
    checked, including owned indices that still hold its documents although no item maps to
    them now (a retired type). The counts of an index that configured tables outside the run
    also feed are "not comparable" (not drift): name those tables too. Exit 0 when clean
    (within --tolerance) or when --repair repaired and read back everything it found, 3 when
    drift is found (and remains), 4 when the repair could not write some documents (see
    --failures), 1 on error.

    \b
    Example:
      ddb2es drift orders-service --sample 2000 --refresh
      ddb2es drift --all --full --repair --yes --report drift.json
      ddb2es --json drift orders-service --counts estimate --seed 42
    """
    from ddb2es_cli.drift import DriftOptions, run_drift
    from ddb2es_cli.segments import default_segments

    app = app_of(ctx, json_output, quiet)
    selected = app.settings.select_tables(tables, all_tables)
    if repair and not (dry_run or yes or confirm("Repair documents in the live indices?")):
        raise click.UsageError("refusing to repair without --yes (not interactive); see --dry-run")
    options = DriftOptions(
        sample=sample,
        orphans=orphans,
        seed=seed,
        counts=counts,
        full=full,
        refresh=refresh,
        tolerance=tolerance,
        repair=repair,
        dry_run=dry_run,
        segments=segments or default_segments(),
        max_rcu=max_rcu,
        failures_path=failures_path,
    )
    options.validate()  # usage errors before any client is built
    ddb, es = make_clients(app)
    bars = Bars(enabled=not app.quiet and sys.stderr.isatty())
    try:
        report = run_drift(ddb, es, app.settings, selected, options, bars)
    finally:
        bars.close()
    data: dict[str, Any] = report.as_dict()
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        write_private_text(report_path, json.dumps(data, indent=2) + "\n")

    def render(console: Console) -> None:
        for t in data["tables"]:
            items = f"~{t['items']}" if t["items_estimated"] else str(t["items"])
            rcu = ", ".join(f"{k} {v}" for k, v in t["rcu"].items()) or "none"
            console.print(
                f"[bold]{escape(t['table'])}[/]: {items} items ({t['counts']} counts), "
                f"{t['invalid_index_items']} with an invalid index name; RCU: {rcu}"
            )
            if options.full:
                table = Table("index", "items", "documents", "diff", "missing", "different")
                table.add_column("orphans")
            else:
                table = Table("index", "items", "documents", "diff", "sampled", "missing")
                table.add_column("different")
                table.add_column("orphans/checked")
            table.add_column("foreign")
            for i in t["indices"]:
                diff = i["difference"]
                shown = "n/c" if not i["comparable"] else "" if diff is None else f"{diff:+d}"
                row = [
                    escape(i["index"]) + ("" if i["exists"] else " (none)"),
                    "?" if i["table_count"] is None else str(i["table_count"]),
                    str(i["index_count"]),
                    "0" if shown == "+0" else shown,
                ]
                if options.full:
                    f = i["full"] or {}
                    row += [str(f.get(k, 0)) for k in ("missing", "different", "orphans")]
                else:
                    row += [str(i["sampled"]), str(i["missing"]), str(i["different"])]
                    row += [f"{i['orphans']}/{i['orphans_checked']}"]
                table.add_row(*row, str(i["foreign"]))
            console.print(table)
            for i in t["indices"]:
                for e in i["examples"]:
                    extra = e.get("reason") or ", ".join(e.get("fields", []))
                    line = f"  {e['kind']:<9} {e['index']} {e['id']} {extra}"
                    console.print(line, markup=False)
            for note in t["notes"]:
                console.print(f"  {note}", markup=False, style="dim")
            for reason in t["reasons"]:
                console.print(f"  drift: {reason}", markup=False, style="red")
            if not t["drifted"]:
                console.print("  [green]clean[/]")
            elif not t["drift_remains"]:
                console.print("  [green]repaired and verified[/]")
            elif t["remaining"] != t["reasons"]:
                for reason in t["remaining"]:
                    console.print(f"  remains: {reason}", markup=False, style="red")
        r = data["repair"]
        if r is not None and r["dry_run"]:
            console.print(f"repair plan (dry run): {r['planned']} changes for {r['keys']} keys")
        elif r is not None:
            table = Table("indexed", "deleted", "newer write in flight", "already in sync")
            for column in ("owned elsewhere", "failed", "verified"):
                table.add_column(column)
            table.add_row(
                *(str(r[k]) for k in ("indexed", "deleted", "newer_write_in_flight")),
                *(str(r[k]) for k in ("already_in_sync", "other_tables", "failed", "verified")),
            )
            console.print(table)
        for step in report.repair.steps[:50] if report.repair else []:
            outcome = "" if step.outcome == "planned" else f" -> {step.outcome}"
            line = f"  {step.describe(dry_run=options.dry_run)}{outcome}"
            console.print(line, markup=False)
        console.print(f"seed {data['seed']} (--seed {data['seed']} repeats this sample)")
        failed = report.repair.failed if report.repair else 0
        print_failures(console, failed, "documents could not be repaired", failures_path)

    emit(app, data, render)
    if report.repair and report.repair.failed:
        ctx.exit(ExitStatus.PARTIAL)
    if report.drift_remains:
        ctx.exit(ExitStatus.DIFFERS)
