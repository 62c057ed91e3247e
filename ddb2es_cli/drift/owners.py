"""Which table owns a document: the run's tables first, then the other configured tables whose
index prefix fits (their documents must never pass for orphans of ours)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ddb2es_cli.config import Settings
from ddb2es_cli.drift.options import DriftOptions
from ddb2es_cli.drift.tables import DriftTable, batch_get, open_table
from ddb2es_cli.source import Key, TableNotFound
from ddb2es_cli.transform import TransformError, document_id, index_name, key_from_id

log = logging.getLogger("ddb2es.drift")


class Owners:
    """The tables of a run and of the config file, and which of them claims a document."""

    def __init__(
        self, ddb: Any, settings: Settings, tables: list[DriftTable], options: DriftOptions
    ) -> None:
        self.ddb, self.settings, self.options = ddb, settings, options
        self.tables = tables
        self._others: list[DriftTable] | None = None
        self.index_owners: dict[str, list[DriftTable]] = {}

    def candidates(self, index: str) -> list[DriftTable]:
        """Every table that could feed `index`: this run's, then the other configured tables
        whose prefix matches (their documents must never pass for orphans of ours)."""
        if self._others is None:
            self._others = []
            checked = {t.name for t in self.tables}
            for table in self.settings.tables:
                if table.name not in checked:
                    try:
                        self._others.append(open_table(self.ddb, table, self.options))
                    except TableNotFound:
                        log.warning("configured table %s does not exist", table.name)
        return [t for t in (*self.tables, *self._others) if t.could_feed(index)]

    def others(self, index: str, but: DriftTable | None = None) -> list[DriftTable]:
        """The candidates of `index` other than `but` (default: other than this run's)."""
        if but is None:
            return [t for t in self.candidates(index) if t not in self.tables]
        return [t for t in self.candidates(index) if t is not but]

    def claimed(
        self, index: str, tables: Sequence[DriftTable], docs: Sequence[tuple[str, str]]
    ) -> set[str]:
        """Ids of the documents (id, key JSON) for which one of `tables` has an item that
        belongs in `index` under that very id (consistent reads)."""
        return set(self.claimed_by(index, tables, docs))

    def claimed_by(
        self, index: str, tables: Sequence[DriftTable], docs: Sequence[tuple[str, str]]
    ) -> dict[str, str]:
        """`claimed`, with the name of the table that has each document's item."""
        found: dict[str, str] = {}
        for table in tables:
            keys: dict[str, tuple[Key, list[str]]] = {}
            for doc_id, text in docs:
                key = table.request_key(text)
                if key is not None:
                    keys.setdefault(table.key_text(key), (key, []))[1].append(doc_id)
            if not keys:
                continue
            answers = batch_get(
                self.ddb,
                table,
                [key for key, _ in keys.values()],
                consistent=True,
                projection=True,
                phase="orphans",
            )
            for text, item, _ in answers:
                ids = keys[text][1] if text in keys else []
                for i in ids:
                    if i not in found and not orphan_reason(table, index, i, text, item):
                        found[i] = table.name
        return found

    def shared_outside(self, index: str, names: Sequence[str]) -> None:
        """Configured tables outside the run (`names`) feed `index`: its counts cannot be
        compared in this run (the sample, orphans and the full comparison still can)."""
        for table in self.index_owners.get(index, []):
            report = table.report.index(index)
            known = set(report.not_comparable_tables) | set(names)
            report.not_comparable_tables = sorted(known)
            report.comparable = False
            listed = ", ".join(report.not_comparable_tables)
            run = " ".join([t.name for t in self.tables] + report.not_comparable_tables)
            report.not_comparable = (
                f"also fed by {listed}, not in this run: check them together (ddb2es drift {run})"
            )

    def run_tables_for(self, index: str) -> list[tuple[int, DriftTable]]:
        """(position, table) of this run's tables that could feed `index`, those that do first:
        an orphan is charged to the first whose key attributes it has."""
        owners = self.index_owners.get(index, [])
        ranked = sorted(enumerate(self.tables), key=lambda pt: pt[1] not in owners)
        return [(p, t) for p, t in ranked if t.could_feed(index)]


def doc_key(table: DriftTable, doc_id: str, source: Mapping[str, Any]) -> Key | None:
    """The DynamoDB key a document stands for, or None when it is not this table's."""
    try:
        key = key_from_id(doc_id, source)
    except (TransformError, ValueError):
        return None
    return table.request_key_of(key)


def orphan_reason(
    table: DriftTable, index: str, doc_id: str, key_text: str, item: Mapping[str, Any] | None
) -> str:
    """Why the document should not be in `index`, or "" when it should."""
    if item is None:
        return "item_gone"
    try:
        target = index_name(item, table.shape)
    except TransformError as exc:
        return exc.reason
    if target != index:
        return "type_changed"
    if document_id(key_text) != doc_id:
        return "id_not_canonical"
    return ""
