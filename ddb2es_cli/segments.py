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
    on two cores, four threads reading 500-item pages cost 12-19% less CPU per small item than
    eight reading 250-item pages, for the same items in flight (docs/benchmarks.md, issue 14).
    Four readers still fetch far more than one process indexes; `--processes` is how a load
    uses more cores.
    """
    return max(2, 2 * (os.cpu_count() or 1))
