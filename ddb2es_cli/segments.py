"""How many parallel scan segments a command uses by default."""

from __future__ import annotations

import os


def default_segments() -> int:
    """Counting scans (drift, rollback) and work units: four per CPU, at least four. A count's
    threads mostly wait on DynamoDB, and units are claimed by threads as they free up."""
    return max(4, 4 * (os.cpu_count() or 1))


def default_load_segments() -> int:
    """Loads (reindex, reload): two reader threads per CPU, at least two.

    A load's reader threads share one interpreter lock with the transform and the bulk writer:
    eight threads on two cores cost some 15% more CPU per item than four reading twice as large
    pages (docs/benchmarks.md, issue 14), for the same items in flight. Four readers still fetch
    far more than one process can index; `--processes` scales past one core.
    """
    return max(2, 2 * (os.cpu_count() or 1))
