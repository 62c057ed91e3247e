"""Where a scaled run stands, read from its state backend alone (any machine can ask):
units, items, rate, ETA, live workers, takeovers; and the totals as a ReindexSummary.
"""

from __future__ import annotations

import time
from typing import Any

from ddb2es_cli.reindex import ReindexSummary, TableSummary
from ddb2es_cli.scale_run import COUNTERS
from ddb2es_cli.state import DEFAULT_LEASE_SECONDS, StateBackend


def run_status(backend: StateBackend, run_id: str) -> dict[str, Any]:
    """Units done/claimed/free, items, rate, ETA, live workers, failures, takeovers, result."""
    run = backend.load_run(run_id)
    units = backend.units(run_id)
    claimed = backend.claimed(run_id, units)
    workers = backend.workers(run_id)
    lease = float(run.options.get("lease_seconds", DEFAULT_LEASE_SECONDS))
    now = time.time()
    totals = {name: 0.0 for name in COUNTERS}
    per_table: dict[str, dict[str, Any]] = {}
    for table in run.table_names:
        mine = [u for u in units if u.table == table]
        counts = {name: 0.0 for name in COUNTERS}
        for w in workers:
            for name in COUNTERS:
                counts[name] += w.counts.get(table, {}).get(name, 0.0)
        for name in COUNTERS:
            totals[name] += counts[name]
        done = sum(1 for u in mine if u.done)
        busy = sum(1 for u in mine if u.ident in claimed)
        per_table[table] = {
            "table": table,
            "units": len(mine),
            "done": done,
            "claimed": busy,
            "free": len(mine) - done - busy,
            "scanned": sum(u.scanned for u in mine),
            "estimated_items": run.estimated_items.get(table, 0),
            **{name: int(counts[name]) for name in COUNTERS if name not in ("scanned", "rcu")},
            "rcu": round(counts["rcu"], 1),
        }
    scanned = sum(t["scanned"] for t in per_table.values())
    estimated = sum(run.estimated_items.values())
    elapsed = (run.result or {}).get("duration_s") or max(now - run.created, 1e-3)
    rate = scanned / elapsed if elapsed else 0.0
    eta = None
    if run.status == "running" and rate > 0:
        eta = round(max(estimated - scanned, 0) / rate, 1)
    takeovers = [
        {"table": u.table, "unit": u.number, "takeovers": u.takeovers, "owners": u.owners}
        for u in units
        if u.takeovers
    ]
    return {
        "run_id": run.run_id,
        "command": run.command,
        "status": run.status,
        "who": run.who,
        "created": run.created,
        "backend": backend.describe(),
        "tables": list(per_table.values()),
        "units": {
            "total": len(units),
            "done": sum(t["done"] for t in per_table.values()),
            "claimed": sum(t["claimed"] for t in per_table.values()),
            "free": sum(t["free"] for t in per_table.values()),
        },
        "items": scanned,
        "estimated_items": estimated,
        "items_per_s": round(rate, 1),
        "eta_s": eta,
        "indexed": int(totals["indexed"]),
        "conflicts": int(totals["conflicts"]),
        "failed": int(totals["failed"]),
        "gone": int(totals["gone"]),
        "takeovers": sum(t["takeovers"] for t in takeovers),
        "takeover_units": takeovers,
        "workers": [
            {
                "worker_id": w.worker_id,
                "host": w.host,
                "pid": w.pid,
                "live": not w.finished and now - w.heartbeat < 3 * lease,
                "finished": w.finished,
                "indexed": int(sum(c.get("indexed", 0) for c in w.counts.values())),
                "failed": int(sum(c.get("failed", 0) for c in w.counts.values())),
                "failures_path": w.failures_path,
            }
            for w in workers
        ],
        "live_workers": sum(1 for w in workers if not w.finished and now - w.heartbeat < 3 * lease),
        "result": run.result,
    }


def run_summary(status: dict[str, Any]) -> ReindexSummary:
    """The run's totals in the shape of a single-process summary (the CLI table and --json)."""
    tables = {}
    for t in status["tables"]:
        summary = TableSummary(t["table"], t["estimated_items"])
        summary.scanned = t["scanned"]
        for name in ("indexed", "conflicts", "failed", "gone"):
            setattr(summary, name, t[name])
        summary.rcu = t["rcu"]
        duration = float((status.get("result") or {}).get("duration_s") or 0.0)
        summary.started = time.monotonic() - duration
        summary.finished = time.monotonic()
        tables[t["table"]] = summary
    result = status.get("result") or {}
    paths = [w["failures_path"] for w in status["workers"] if w["failed"]]
    return ReindexSummary(
        tables,
        {},
        status["failed"],
        ", ".join(p for p in paths if p) or None,
        [],
        list(result.get("restored_settings", [])),
        False,
        [],
    )
