"""`drift`: is the index still true to the table? Counts, sampled documents, orphans, a full
comparison, and a repair that makes it so. docs/architecture.md ("drift") maps the checks onto
the modules of this package:

- options.py  what a run is asked to do (`DriftOptions`)
- run.py      `run_drift`: the checks in order, errors made typed
- context.py  the state one run shares (`DriftRun`), the scan helper
- tables.py   the DynamoDB side: keys, batched consistent reads
- counts.py   exact counts (key-only scan) and the search side's counts
- sampling.py the bottom-k and segment samples, and the check of sampled items
- scope.py    which indices a table feeds (including retired types)
- owners.py   which table owns a document
- orphans.py  documents whose item is gone or belongs elsewhere
- full.py     the full bucketed comparison
- compare.py  how a document is compared (exact numbers)
- repair.py   the repair: fresh reads, versioned writes, read-back
- verdict.py  what counts as drift
- report.py   the report
"""

from ddb2es_cli.drift.options import DriftOptions
from ddb2es_cli.drift.report import DriftReport, Finding, RepairResult, TableReport
from ddb2es_cli.drift.run import run_drift
from ddb2es_cli.errors import DriftError

__all__ = [
    "DriftError",
    "DriftOptions",
    "DriftReport",
    "Finding",
    "RepairResult",
    "TableReport",
    "run_drift",
]
