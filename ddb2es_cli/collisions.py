"""Tables that can overwrite each other's documents: ids are the key JSON, so two tables with the
same key attribute names and an index in common collide (doctor warns, the reload plan too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ddb2es_cli.config import TableSettings


@dataclass(frozen=True)
class KeyCollision:
    """Two configured tables whose documents can land in one index under the same ids: ids are
    the key JSON, so with the same key attribute names one table's item overwrites the other's
    document (and a delete of one removes the other)."""

    first: str
    second: str
    key_names: tuple[str, ...]
    shared_default: str | None  # both tables' items without a type land in this index

    def describe(self) -> str:
        keys = ", ".join(self.key_names)
        where = (
            f"items without a type of both land in {self.shared_default}, and any type both use"
            if self.shared_default
            else "items of any type both use land in one index"
        )
        return (
            f"{self.first} and {self.second} have the same key attributes ({keys}): {where}, "
            "where equal keys overwrite each other's documents; give one an index_prefix"
        )


def key_collisions(tables: Sequence[tuple[TableSettings, Sequence[str]]]) -> list[KeyCollision]:
    """Pairs of configured tables (settings, key attribute names) whose items can land in the
    same index with the same document ids. Pure: doctor and the reload plan call it."""
    found: list[KeyCollision] = []
    for i, (a, a_keys) in enumerate(tables):
        for b, b_keys in tables[i + 1 :]:
            if sorted(a_keys) != sorted(b_keys):
                continue
            pa, pb = a.index_prefix.lower(), b.index_prefix.lower()
            if not (pa.startswith(pb) or pb.startswith(pa)):
                continue  # no index name can be both tables'
            da, db = (pa + a.default_type).lower(), (pb + b.default_type).lower()
            found.append(
                KeyCollision(a.name, b.name, tuple(sorted(a_keys)), da if da == db else None)
            )
    return found
