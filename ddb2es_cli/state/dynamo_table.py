"""The DynamoDB state table: key `pk` (S) + `sk` (S) on demand billing, the IAM actions a
worker needs, `state init` and the schema check, and one guarded call every record write uses.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ddb2es_cli.errors import ConfigError
from ddb2es_cli.state.records import StateLost

KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
ATTRIBUTES = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "S"},
]
IAM_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:DescribeTable",
)
INIT_ACTIONS = ("dynamodb:CreateTable",)


class ConditionFailed(Exception):
    """A conditional write found the item changed: an answer, not an error."""


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": str(value)}


def unit_sk(table: str, number: int) -> str:
    return f"unit#{table}#{number:06d}"


class DynamoTable:
    """The state table itself: its key schema, creating and checking it, and the one way to
    call it (a failed condition is an answer; a lost table or lost access is StateLost)."""

    ddb: Any
    table: str

    def _call(self, method: str, **request: Any) -> Any:
        """One DynamoDB call: a failed condition is an answer; losing the table or access is
        StateLost (one line, exit 1)."""
        try:
            return getattr(self.ddb, method)(TableName=self.table, **request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed from None
            if code == "ResourceNotFoundException":
                raise StateLost(
                    f"state table {self.table} does not exist any more; the failures files are "
                    "kept; recreate it (`ddb2es state init`) and start a new run"
                ) from None
            message = exc.response.get("Error", {}).get("Message", "")
            raise StateLost(
                f"state table {self.table}: {code or type(exc).__name__}: {message[:200]}; "
                "checkpoints written so far are kept"
            ) from None
        except BotoCoreError as exc:
            raise StateLost(f"state table {self.table}: {exc}; checkpoints are kept") from None

    def _update(self, **request: Any) -> bool:
        try:
            self._call("update_item", **request)
            return True
        except ConditionFailed:
            return False

    def _query(self, run_id: str, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": _s(f"run#{run_id}"), ":prefix": _s(prefix)},
            "ConsistentRead": True,
        }
        while True:
            page = self._call("query", **request)
            items.extend(page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def check(self) -> None:
        """The table exists and has our key schema; else one line and exit 2."""
        try:
            found = self.ddb.describe_table(TableName=self.table)["Table"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise ConfigError(
                    f"state table {self.table} does not exist: create it with "
                    f"`ddb2es state init --state-table {self.table}`"
                ) from None
            raise
        keys = sorted((k["AttributeName"], k["KeyType"]) for k in found["KeySchema"])
        types = {a["AttributeName"]: a["AttributeType"] for a in found["AttributeDefinitions"]}
        if (
            keys != [("pk", "HASH"), ("sk", "RANGE")]
            or types.get("pk") != "S"
            or (types.get("sk") != "S")
        ):
            raise ConfigError(
                f"state table {self.table} has the wrong key schema "
                f"({', '.join(f'{n} {t}' for n, t in keys)}); a ddb2es state table has "
                "pk (S, HASH) and sk (S, RANGE): name another table"
            )

    def init(self) -> bool:
        """Create the table on demand billing unless it exists; wait until ACTIVE. True when
        this call created it."""
        created = True
        try:
            self.ddb.create_table(
                TableName=self.table,
                KeySchema=KEY_SCHEMA,
                AttributeDefinitions=ATTRIBUTES,
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
            created = False
        self.ddb.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
        )
        self.check()
        return created
