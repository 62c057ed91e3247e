"""The state of one drift run: the clients, the tables, the options and the scan helper every
check uses. Everything happens on the caller's thread (scan threads only scan)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ddb2es_cli.config import Settings
from ddb2es_cli.drift.options import DriftOptions
from ddb2es_cli.drift.owners import Owners
from ddb2es_cli.drift.repair import Repairer
from ddb2es_cli.drift.tables import DriftTable
from ddb2es_cli.search_json import SearchJson
from ddb2es_cli.source import CapacityLimiter, SegmentTask, scan_pages

if TYPE_CHECKING:
    from ddb2es_cli.reindex import Progress  # a Protocol: only for type checking


class DriftRun(Owners):
    """One drift run: what the checks (counts, sampling, orphans, full, repair) share."""

    def __init__(
        self,
        ddb: Any,
        es: Any,
        settings: Settings,
        tables: list[DriftTable],
        options: DriftOptions,
        seed: int,
        progress: Progress | None,
    ) -> None:
        super().__init__(ddb, settings, tables, options)
        self.es = es
        self.seed = seed
        self.progress = progress
        self.search = SearchJson(es, settings.search.safe_url)
        self.limiter = CapacityLimiter(options.max_rcu)
        self.repairer = Repairer(self) if options.repairing else None
        self.live: dict[str, dict[str, str]] = {}  # prefix -> owned live indices under it

    def scan(
        self,
        table: DriftTable,
        *,
        projection: str | None = None,
        names: dict[str, str] | None = None,
        tasks: list[SegmentTask] | None = None,
    ) -> Iterator[Any]:
        """The pages of a parallel scan of `table` (all segments, or `tasks`), within the
        run's read capacity limit, with progress."""
        if tasks is None:
            total = self.options.segments
            tasks = [SegmentTask(table.name, s, total) for s in range(total)]
            if self.progress is not None:
                self.progress.start(table.name, table.info.item_count)
        pages = scan_pages(
            self.ddb,
            tasks,
            workers=self.options.segments,
            limiter=self.limiter,
            projection=projection,
            expression_names=names,
        )
        try:
            for page in pages:
                if self.progress is not None:
                    self.progress.advance(table.name, len(page.items))
                yield page
        finally:
            pages.close()
