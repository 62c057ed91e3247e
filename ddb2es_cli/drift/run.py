"""`run_drift`: the entry point that runs the checks in order and turns their failures into
typed errors (docs/architecture.md, "drift", tells the whole story)."""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ddb2es_cli.clients import aws_error
from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.drift.context import DriftRun
from ddb2es_cli.drift.counts import count_exact, count_indices, recount
from ddb2es_cli.drift.full import compare_full, describe_difference
from ddb2es_cli.drift.options import DriftOptions
from ddb2es_cli.drift.orphans import check_orphans
from ddb2es_cli.drift.repair import Repairer
from ddb2es_cli.drift.report import DriftReport, Finding, FullCounts
from ddb2es_cli.drift.sampling import check_sample, count_estimate
from ddb2es_cli.drift.scope import index_owners
from ddb2es_cli.drift.tables import DriftTable, open_table
from ddb2es_cli.drift.verdict import evaluate, reasons
from ddb2es_cli.errors import ConnectionFailed, Ddb2esError, DriftError
from ddb2es_cli.search_json import _is_connection_error
from ddb2es_cli.source import install_fast_decode

if TYPE_CHECKING:
    from ddb2es_cli.reindex import Progress  # a Protocol: only for type checking

log = logging.getLogger("ddb2es.drift")


def run_drift(
    ddb: Any,
    es: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: DriftOptions,
    progress: Progress | None = None,
) -> DriftReport:
    """Check `tables` against their indices (and repair them when asked).

    docs/architecture.md ("drift") describes the checks."""
    options.validate()
    started = time.monotonic()
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    if options.fast_decode:
        install_fast_decode(ddb)
    try:
        contexts = [open_table(ddb, t, options) for t in tables]
        run = DriftRun(ddb, es, settings, contexts, options, seed, progress)
        report = DriftReport([t.report for t in contexts], seed, options)
        if options.full:
            _run_full(run)
        else:
            _run_sampled(run)
        if run.repairer is not None:
            report.repair = run.repairer.finish()
            for table in contexts:
                evaluate(table.report, options.tolerance)
            if not options.dry_run:
                _after_repair(run, run.repairer)
    except Ddb2esError:
        raise
    except (BotoCoreError, ClientError) as exc:  # DynamoDB's failure: name DynamoDB, not search
        raise aws_error(exc, settings.dynamodb) from exc
    except Exception as exc:
        if _is_connection_error(exc):
            raise ConnectionFailed(f"cannot reach {settings.search.safe_url}") from exc
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise DriftError(f"drift stopped: {type(exc).__name__}: {text}") from exc
    for table in contexts:
        evaluate(table.report, options.tolerance)
    report.duration_s = time.monotonic() - started
    return report


def _run_sampled(run: DriftRun) -> None:
    """Counts, then the sample, then orphans per index (the default mode)."""
    for table in run.tables:
        log.info("drift: %s: %s counts", table.name, table.report.counts_mode)
        if table.report.exact:
            count_exact(run, table)
        else:
            count_estimate(run, table)
    owners = index_owners(run)
    count_indices(run, owners)
    for table in run.tables:
        for finding in check_sample(run, table):
            _found(run, table, finding, full=False)
    for index, tables in sorted(owners.items()):
        for finding in check_orphans(run, index, tables):
            table = next(t for t in tables if t.name == finding.table)
            _found(run, table, finding, full=False)


def _run_full(run: DriftRun) -> None:
    """The full comparison instead of the sample (`--full`)."""
    for table, finding in compare_full(run):
        _found(run, table, finding, full=True)
    for table in run.tables:
        for report in table.report.indices.values():
            if report.full is None:
                report.full = FullCounts()


def _found(run: DriftRun, table: DriftTable, finding: Finding, *, full: bool) -> None:
    """Record a finding in the report and hand it to the repair, if one runs."""
    report = table.report.index(finding.index)
    if (
        full
        and finding.kind == "different"
        and report.wants_example("different", run.options.examples)
    ):
        # Only digests were compared: read both sides again for the example's fields.
        finding = describe_difference(run, table, finding)
    table.report.record(finding, run.options.examples, full=full)
    if run.repairer is not None:
        run.repairer.add(finding)


def _after_repair(run: DriftRun, repairer: Repairer) -> None:
    """What drift remains once the repair wrote and read back: counts again where it wrote;
    findings it could not repair and verify (failed, newer write in flight) remain."""
    if repairer.written:
        recount(run, repairer.written)
    for table in run.tables:
        remaining = reasons(table.report, run.options.tolerance, after_repair=True)
        unresolved = repairer.unresolved[table.name]
        if unresolved > run.options.tolerance:
            remaining.append(f"the repair left {unresolved} findings as they were")
        elif not table.report.reasons and not remaining:
            continue
        table.report.remaining = remaining
