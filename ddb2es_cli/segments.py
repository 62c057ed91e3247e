"""How many parallel scan segments a command uses by default (reindex, reload, drift)."""

from __future__ import annotations

import os


def default_segments() -> int:
    """Four per CPU, at least four: scan threads mostly wait on DynamoDB, not on the CPU."""
    return max(4, 4 * (os.cpu_count() or 1))
