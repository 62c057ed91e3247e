"""The DynamoDB backend: one table, key `pk` (S) + `sk` (S), shared by any number of machines.

    pk = run#<id>   sk = run                 tables, options, who, when, status, result, finisher
                    sk = unit#<table>#<n>    owner, counter, position, scanned, done, takeovers
                    sk = restore#<index>     the index settings to put back after the load
                    sk = worker#<id>         heartbeat (display only) and the worker's counts

Every write is conditional. Ownership is a lease: the owner bumps `counter` on every heartbeat;
a taker that sees (owner, counter) unchanged for `lease_seconds` of its own clock takes the unit
with a condition on exactly that pair (see records.LeaseWatch). The table itself (schema,
creation, the guarded call) is dynamo_table.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from ddb2es_cli.errors import ConfigError
from ddb2es_cli.state.dynamo_table import ATTRIBUTES as ATTRIBUTES
from ddb2es_cli.state.dynamo_table import IAM_ACTIONS as IAM_ACTIONS
from ddb2es_cli.state.dynamo_table import INIT_ACTIONS as INIT_ACTIONS
from ddb2es_cli.state.dynamo_table import KEY_SCHEMA as KEY_SCHEMA
from ddb2es_cli.state.dynamo_table import ConditionFailed, DynamoTable, _n, _s
from ddb2es_cli.state.dynamo_table import unit_sk as unit_sk
from ddb2es_cli.state.records import (
    DEFAULT_LEASE_SECONDS,
    OWNER_HISTORY,
    LeaseWatch,
    RunRecord,
    UnitRecord,
    WorkerRecord,
)


class DynamoState(DynamoTable):
    name = "dynamodb"

    def __init__(
        self,
        ddb: Any,
        table: str,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ddb, self.table = ddb, table
        self.lease_seconds = lease_seconds
        self.watch = LeaseWatch(lease_seconds, clock)
        self._claim_lock = threading.Lock()

    def describe(self) -> str:
        return f"state table {self.table}"

    # -- runs --

    def create_run(self, run: RunRecord, units: list[UnitRecord]) -> None:
        pk = _s(f"run#{run.run_id}")
        for unit in units:
            self._call(
                "put_item",
                Item={
                    "pk": pk,
                    "sk": _s(unit_sk(unit.table, unit.number)),
                    "table": _s(unit.table),
                    "number": _n(unit.number),
                    "total": _n(unit.total),
                    "counter": _n(0),
                    "takeovers": _n(0),
                    "scanned": _n(0),
                    "done": {"BOOL": False},
                    "position": _s(json.dumps(unit.position)),
                    "owners": _s("[]"),
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        try:
            self._call(
                "put_item",
                Item={**self._run_item(run), "pk": pk, "sk": _s("run")},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ConditionFailed:
            raise ConfigError(f"run {run.run_id} exists already") from None

    @staticmethod
    def _run_item(run: RunRecord) -> dict[str, Any]:
        body = run.as_dict()
        for name in ("status", "finisher", "finish_counter", "result"):
            body.pop(name)
        return {
            "body": _s(json.dumps(body)),
            "status": _s(run.status),
            "finish_counter": _n(run.finish_counter),
            "created": _n(run.created),
        }

    @staticmethod
    def _run_of(item: dict[str, Any]) -> RunRecord:
        data = json.loads(item["body"]["S"])
        data["status"] = item["status"]["S"]
        data["finish_counter"] = int(item.get("finish_counter", {}).get("N", "0"))
        data["finisher"] = item.get("finisher", {}).get("S")
        data["result"] = json.loads(item["result"]["S"]) if "result" in item else None
        return RunRecord.from_dict(data)

    def load_run(self, run_id: str) -> RunRecord:
        found = self._call(
            "get_item", Key={"pk": _s(f"run#{run_id}"), "sk": _s("run")}, ConsistentRead=True
        )
        if "Item" not in found:
            raise ConfigError(f"unknown run id {run_id}: not in state table {self.table}")
        return self._run_of(found["Item"])

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "FilterExpression": "sk = :run",
            "ExpressionAttributeValues": {":run": _s("run")},
        }
        while True:
            page = self._call("scan", **request)
            items.extend(page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        runs = sorted((self._run_of(i) for i in items), key=lambda r: r.run_id, reverse=True)
        return runs[:limit]

    def end_run(self, run_id: str, status: str, result: dict[str, Any]) -> None:
        self._update(
            Key={"pk": _s(f"run#{run_id}"), "sk": _s("run")},
            UpdateExpression="SET #s = :s, #r = :r",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#s": "status", "#r": "result"},
            ExpressionAttributeValues={":s": _s(status), ":r": _s(json.dumps(result))},
        )

    # -- units --

    @staticmethod
    def _unit_of(item: dict[str, Any]) -> UnitRecord:
        return UnitRecord(
            table=item["table"]["S"],
            number=int(item["number"]["N"]),
            total=int(item["total"]["N"]),
            position=json.loads(item.get("position", {}).get("S", "null")),
            scanned=int(item.get("scanned", {}).get("N", "0")),
            done=bool(item.get("done", {}).get("BOOL", False)),
            owner=item.get("owner", {}).get("S"),
            counter=int(item.get("counter", {}).get("N", "0")),
            takeovers=int(item.get("takeovers", {}).get("N", "0")),
            owners=json.loads(item.get("owners", {}).get("S", "[]")),
        )

    def units(self, run_id: str) -> list[UnitRecord]:
        return [self._unit_of(i) for i in self._query(run_id, "unit#")]

    def claimed(self, run_id: str, units: list[UnitRecord]) -> set[tuple[str, int]]:
        return {u.ident for u in units if u.owner and not u.done}

    def claim(self, run_id: str, worker_id: str) -> UnitRecord | None:
        """A free unit, else one whose lease this worker saw stand still for the lease time."""
        with self._claim_lock:
            units = sorted(self.units(run_id), key=lambda u: (u.number, u.table))
            for unit in units:
                if not unit.done and not unit.owner and self._take(run_id, worker_id, unit):
                    return unit
            for unit in units:
                if unit.done or not unit.owner or unit.owner == worker_id:
                    continue
                key = (run_id, unit.ident)
                if self.watch.expired(key, unit.owner, unit.counter) and self._take(
                    run_id, worker_id, unit
                ):
                    self.watch.forget(key)
                    return unit
        return None

    def _take(self, run_id: str, worker_id: str, unit: UnitRecord) -> bool:
        previous = unit.owner
        owners = [*unit.owners, worker_id][-OWNER_HISTORY:]
        values: dict[str, Any] = {
            ":me": _s(worker_id),
            ":one": _n(1),
            ":no": {"BOOL": False},
            ":owners": _s(json.dumps(owners)),
        }
        if previous is None:
            condition = "attribute_not_exists(#o) AND done = :no"
            update = "SET #o = :me, #c = #c + :one, owners = :owners"
        else:
            condition = "#o = :old AND #c = :count AND done = :no"
            update = "SET #o = :me, #c = #c + :one, owners = :owners, takeovers = takeovers + :one"
            values[":old"] = _s(previous)
            values[":count"] = _n(unit.counter)
        ok = self._update(
            Key={"pk": _s(f"run#{run_id}"), "sk": _s(unit_sk(unit.table, unit.number))},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames={"#o": "owner", "#c": "counter"},
            ExpressionAttributeValues=values,
        )
        if ok:
            unit.owner, unit.owners, unit.counter = worker_id, owners, unit.counter + 1
            if previous is not None:
                unit.takeovers += 1
        return ok

    def checkpoint(
        self,
        run_id: str,
        worker_id: str,
        unit: UnitRecord,
        position: Any,
        scanned: int,
        done: bool,
    ) -> bool:
        ok = self._update(
            Key={"pk": _s(f"run#{run_id}"), "sk": _s(unit_sk(unit.table, unit.number))},
            UpdateExpression="SET #p = :p, scanned = :n, done = :d",
            ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": "owner", "#p": "position"},
            ExpressionAttributeValues={
                ":p": _s(json.dumps(position)),
                ":n": _n(scanned),
                ":d": {"BOOL": done},
                ":me": _s(worker_id),
            },
        )
        if ok:
            unit.position, unit.scanned, unit.done = position, scanned, done
        return ok

    def release_unit(self, run_id: str, worker_id: str, unit: UnitRecord) -> None:
        """Give an unfinished unit back at once (a stopping worker): no lease to wait out."""
        self._update(
            Key={"pk": _s(f"run#{run_id}"), "sk": _s(unit_sk(unit.table, unit.number))},
            UpdateExpression="REMOVE #o",
            ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":me": _s(worker_id)},
        )

    # -- workers --

    def heartbeat(
        self, run_id: str, worker: WorkerRecord, owned: list[UnitRecord]
    ) -> list[UnitRecord]:
        """Renew every lease this worker holds; the units whose lease is gone come back."""
        lost = []
        for unit in owned:
            if unit.done:
                continue
            if not self._update(
                Key={"pk": _s(f"run#{run_id}"), "sk": _s(unit_sk(unit.table, unit.number))},
                UpdateExpression="SET #c = #c + :one",
                ConditionExpression="#o = :me AND done = :no",
                ExpressionAttributeNames={"#o": "owner", "#c": "counter"},
                ExpressionAttributeValues={
                    ":me": _s(worker.worker_id),
                    ":one": _n(1),
                    ":no": {"BOOL": False},
                },
            ):
                lost.append(unit)
        worker.heartbeat = time.time()
        self._call(
            "put_item",
            Item={
                "pk": _s(f"run#{run_id}"),
                "sk": _s(f"worker#{worker.worker_id}"),
                "body": _s(json.dumps(worker.as_dict())),
            },
        )
        return lost

    def workers(self, run_id: str) -> list[WorkerRecord]:
        return [
            WorkerRecord.from_dict(json.loads(i["body"]["S"]))
            for i in self._query(run_id, "worker#")
        ]

    # -- settings to restore --

    def put_restore(self, run_id: str, index: str, values: dict[str, Any]) -> bool:
        try:
            self._call(
                "put_item",
                Item={
                    "pk": _s(f"run#{run_id}"),
                    "sk": _s(f"restore#{index}"),
                    "index": _s(index),
                    "values": _s(json.dumps(values)),
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
            return True
        except ConditionFailed:
            return False

    def restores(self, run_id: str) -> dict[str, dict[str, Any]]:
        return {
            i["index"]["S"]: json.loads(i["values"]["S"]) for i in self._query(run_id, "restore#")
        }

    def drop_restore(self, run_id: str, index: str) -> None:
        self._call("delete_item", Key={"pk": _s(f"run#{run_id}"), "sk": _s(f"restore#{index}")})

    # -- finishing --

    def begin_finish(self, run_id: str, worker_id: str) -> bool:
        """Exactly one worker wins; a finisher whose counter stands still for the lease time
        is replaced."""
        run = self.load_run(run_id)
        if run.status != "running":
            return False
        if run.finisher == worker_id:
            return True
        names = {"#f": "finisher", "#c": "finish_counter", "#s": "status"}
        values: dict[str, Any] = {":me": _s(worker_id), ":one": _n(1), ":run": _s("running")}
        if run.finisher is None:
            condition = "attribute_not_exists(#f) AND #s = :run"
        else:
            if not self.watch.expired((run_id, "finish"), run.finisher, run.finish_counter):
                return False
            condition = "#f = :old AND #c = :count AND #s = :run"
            values[":old"] = _s(run.finisher)
            values[":count"] = _n(run.finish_counter)
        return self._update(
            Key={"pk": _s(f"run#{run_id}"), "sk": _s("run")},
            UpdateExpression="SET #f = :me, #c = #c + :one",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def renew_finish(self, run_id: str, worker_id: str) -> None:
        self._update(
            Key={"pk": _s(f"run#{run_id}"), "sk": _s("run")},
            UpdateExpression="SET #c = #c + :one",
            ConditionExpression="#f = :me",
            ExpressionAttributeNames={"#f": "finisher", "#c": "finish_counter"},
            ExpressionAttributeValues={":me": _s(worker_id), ":one": _n(1)},
        )

    def close(self) -> None:
        pass
