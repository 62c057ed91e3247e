"""What a drift run is asked to do (the CLI builds it from its flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ddb2es_cli.errors import ConfigError
from ddb2es_cli.segments import default_segments

CountMode = Literal["exact", "estimate"]
COUNT_MODES: tuple[CountMode, ...] = ("exact", "estimate")


@dataclass
class DriftOptions:
    sample: int = 1000
    orphans: int | None = None  # per index; None: the sample size
    seed: int | None = None  # None: a random seed, reported so that the run can be repeated
    counts: CountMode = "exact"
    full: bool = False
    refresh: bool = False
    tolerance: int = 0
    repair: bool = False
    dry_run: bool = False  # plan the repair, write nothing
    segments: int = field(default_factory=default_segments)
    max_rcu: float | None = None
    examples: int = 5  # example findings kept per index and kind
    buckets: int = 256  # full comparison: spill files per side
    work_dir: Path | None = None  # full comparison: where spill files go (default: temp dir)
    listed_steps: int = 200  # repair steps kept in the report (all are counted)
    failures_path: Path | None = Path("ddb2es-drift-failures.ndjson")  # writes that failed
    fast_decode: bool = True

    @property
    def orphan_sample(self) -> int:
        return self.sample if self.orphans is None else self.orphans

    @property
    def repairing(self) -> bool:
        return self.repair or self.dry_run

    def validate(self) -> None:
        if self.counts not in COUNT_MODES:
            raise ConfigError(f"--counts must be one of {', '.join(COUNT_MODES)}")
        if self.sample < 0 or self.orphan_sample < 0:
            raise ConfigError("--sample and --orphans must be 0 or more")
        if self.tolerance < 0:
            raise ConfigError("--tolerance must be 0 or more")
        if self.segments < 1:
            raise ConfigError("--segments must be at least 1")
        if not 1 <= self.buckets <= 65536:
            raise ConfigError("buckets must be between 1 and 65536")
        if self.full and self.counts == "estimate":
            raise ConfigError("--full counts every item exactly; drop --counts estimate")
        if self.counts == "estimate" and not self.full and self.sample < 1:
            raise ConfigError("--counts estimate needs a sample: it finds the table's indices")
