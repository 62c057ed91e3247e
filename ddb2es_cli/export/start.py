"""`export start`: ExportTableToPointInTime (always DYNAMODB_JSON), then wait for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.export.manifest import DYNAMODB_JSON, NEW_AND_OLD_IMAGES
from ddb2es_cli.source import TableNotFound

# Codes of endpoints that have no export API at all (DynamoDB Local and other emulators).
_UNSUPPORTED = frozenset({"UnknownOperationException", "UnrecognizedClientException"})


class ExportFailed(Ddb2esError):
    """DynamoDB refused the export, or the export ended FAILED."""


@dataclass(frozen=True)
class ExportStatus:
    arn: str
    status: str  # IN_PROGRESS, COMPLETED, FAILED
    url: str | None  # where to pass it on: s3://bucket/prefix/AWSDynamoDB/<ExportId>/
    item_count: int | None = None
    billed_bytes: int | None = None
    failure: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "export_arn": self.arn,
            "status": self.status,
            "url": self.url,
            "item_count": self.item_count,
            "billed_bytes": self.billed_bytes,
            "failure": self.failure,
        }


def start_export(
    ddb: Any,
    table: str,
    bucket: str,
    prefix: str | None = None,
    incremental: tuple[datetime, datetime] | None = None,
) -> ExportStatus:
    """Ask for the export; a table without point-in-time recovery or an endpoint without the
    export API is one clear line."""
    arn = _table_arn(ddb, table)
    request: dict[str, Any] = {
        "TableArn": arn,
        "S3Bucket": bucket,
        "ExportFormat": DYNAMODB_JSON,
    }
    if prefix:
        request["S3Prefix"] = prefix.strip("/")
    if incremental is not None:
        request["ExportType"] = "INCREMENTAL_EXPORT"
        request["IncrementalExportSpecification"] = {
            "ExportFromTime": incremental[0],
            "ExportToTime": incremental[1],
            "ExportViewType": NEW_AND_OLD_IMAGES,
        }
    try:
        answer = ddb.export_table_to_point_in_time(**request)
    except ClientError as exc:
        raise _refusal(exc, table) from None
    return _status(answer["ExportDescription"])


def _table_arn(ddb: Any, table: str) -> str:
    try:
        arn: str = ddb.describe_table(TableName=table)["Table"]["TableArn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            raise TableNotFound(f"table {table!r} does not exist") from None
        raise
    return arn


def _refusal(exc: ClientError, table: str) -> Ddb2esError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "error"))
    message = str(error.get("Message", "")).splitlines()[0] if error.get("Message") else ""
    if code == "PointInTimeRecoveryUnavailableException" or "point in time" in message.lower():
        return ConfigError(
            f"table {table!r} has point-in-time recovery off; exports need it: "
            f"aws dynamodb update-continuous-backups --table-name {table} "
            "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true"
        )
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _UNSUPPORTED or status in (404, 501) or "not supported" in message.lower():
        return ConfigError(
            f"this DynamoDB endpoint does not support exports ({code}); exports need AWS "
            "DynamoDB (DynamoDB Local has no ExportTableToPointInTime)"
        )
    return ExportFailed(f"DynamoDB refused the export of {table!r}: {code}: {message}"[:400])


def describe_export(ddb: Any, arn: str) -> ExportStatus:
    return _status(ddb.describe_export(ExportArn=arn)["ExportDescription"])


def wait_export(
    ddb: Any,
    arn: str,
    on_poll: Callable[[ExportStatus, float], None] | None = None,
    interval: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ExportStatus:
    """Poll until the export is no longer IN_PROGRESS; FAILED raises with DynamoDB's reason."""
    started = time.monotonic()
    while True:
        status = describe_export(ddb, arn)
        if on_poll is not None:
            on_poll(status, time.monotonic() - started)
        if status.status == "FAILED":
            raise ExportFailed(f"export {arn} failed: {status.failure or 'no reason given'}")
        if status.status != "IN_PROGRESS":
            return status
        sleep(interval)


def _status(description: dict[str, Any]) -> ExportStatus:
    manifest = description.get("ExportManifest")
    bucket = description.get("S3Bucket")
    url = None
    if manifest and bucket:
        url = f"s3://{bucket}/{manifest.rsplit('/', 1)[0]}/"
    elif bucket and description.get("ExportArn"):
        export_id = description["ExportArn"].rsplit("/", 1)[-1]
        prefix = description.get("S3Prefix")
        url = f"s3://{bucket}/{prefix.strip('/') + '/' if prefix else ''}AWSDynamoDB/{export_id}/"
    failure = description.get("FailureMessage")
    code = description.get("FailureCode")
    return ExportStatus(
        arn=description["ExportArn"],
        status=str(description.get("ExportStatus", "IN_PROGRESS")),
        url=url,
        item_count=description.get("ItemCount"),
        billed_bytes=description.get("BilledSizeBytes"),
        failure=f"{code}: {failure}" if code else failure,
    )
