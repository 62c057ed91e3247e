"""DynamoDB table exports in the real layout, written by the tests, and a local S3 server.

`write_full_export` and `write_incremental_export` write what ExportTableToPointInTime writes
(manifest-summary.json, manifest-files.json with each gzip object's base64 MD5 and item count,
the data files) under `root`, as a bucket root: `<root>/<prefix>/AWSDynamoDB/<ExportId>/`.
`upload_tree` copies that bucket root into an S3 bucket, so the same export exists both ways.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.servers import moto_server

ACCOUNT = "123456789012"


@dataclass
class ExportFiles:
    root: Path  # the bucket root
    prefix: str
    export_id: str

    @property
    def folder(self) -> Path:
        return self.root / self.prefix / "AWSDynamoDB" / self.export_id

    @property
    def url(self) -> str:
        return str(self.folder)

    def s3_url(self, bucket: str) -> str:
        return f"s3://{bucket}/{self.prefix}/AWSDynamoDB/{self.export_id}/"

    def data_files(self) -> list[Path]:
        """The data files in manifest order."""
        lines = (self.folder / "manifest-files.json").read_text().splitlines()
        keys = [json.loads(line)["dataFileS3Key"] for line in lines if line.strip()]
        return [self.root / key for key in keys]

    def rewrite_manifest_entry(self, number: int, **changes: Any) -> None:
        path = self.folder / "manifest-files.json"
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        entries[number].update(changes)
        path.write_text("".join(json.dumps(e) + "\n" for e in entries))

    def reseal(self, number: int) -> None:
        """Make the manifest match data file `number` as it is now (MD5 and line count)."""
        data = self.data_files()[number].read_bytes()
        try:
            count = sum(1 for line in gzip.decompress(data).splitlines() if line.strip())
        except (EOFError, OSError):
            count = self._entry(number)["itemCount"]
        self.rewrite_manifest_entry(number, md5Checksum=md5_b64(data), itemCount=count)

    def _entry(self, number: int) -> dict[str, Any]:
        lines = (self.folder / "manifest-files.json").read_text().splitlines()
        entry: dict[str, Any] = json.loads(lines[number])
        return entry


def iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


def json_shape(value: Any) -> Any:
    """A boto3-shaped item (binary as bytes) as export lines carry it (binary as base64)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {k: json_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_shape(v) for v in value]
    return value


def _write(
    root: Path,
    prefix: str,
    export_id: str,
    data_dir: str,
    lines_per_file: list[list[dict[str, Any]]],
    summary: dict[str, Any],
) -> ExportFiles:
    folder = root / prefix / "AWSDynamoDB" / export_id
    (root / prefix / "AWSDynamoDB" / data_dir).mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for lines in lines_per_file:
        name = f"{uuid.uuid4().hex[:26]}.json.gz"
        key = f"{prefix}/AWSDynamoDB/{data_dir}/{name}"
        text = "".join(json.dumps(json_shape(line)) + "\n" for line in lines)
        data = gzip.compress(text.encode(), mtime=0)
        (root / key).write_bytes(data)
        entries.append(
            {
                "itemCount": len(lines),
                "md5Checksum": md5_b64(data),
                "etag": hashlib.md5(data, usedforsecurity=False).hexdigest(),
                "dataFileS3Key": key,
            }
        )
    (folder / "manifest-files.json").write_text("".join(json.dumps(e) + "\n" for e in entries))
    summary = {
        **summary,
        "itemCount": sum(len(lines) for lines in lines_per_file),
        "manifestFilesS3Key": f"{prefix}/AWSDynamoDB/{export_id}/manifest-files.json",
    }
    (folder / "manifest-summary.json").write_text(json.dumps(summary))
    (folder / "_started").write_text("")
    return ExportFiles(root, prefix, export_id)


def write_full_export(
    root: Path,
    table: str,
    files: list[list[dict[str, Any]]],
    export_time_ms: int,
    *,
    prefix: str = "exports",
    output_format: str = "DYNAMODB_JSON",
) -> ExportFiles:
    """A full export of `table`: one data file per list of items (an empty list: an empty
    file, as an empty partition gives)."""
    export_id = f"{export_time_ms:014d}-{uuid.uuid4().hex[:8]}"
    return _write(
        root,
        prefix,
        export_id,
        f"{export_id}/data",
        [[{"Item": item} for item in items] for items in files],
        {
            "version": "2020-06-30",
            "exportArn": f"{_table_arn(table)}/export/{export_id}",
            "startTime": iso(export_time_ms + 5000),
            "endTime": iso(export_time_ms + 60_000),
            "tableArn": _table_arn(table),
            "tableId": str(uuid.uuid4()),
            "exportTime": iso(export_time_ms),
            "s3Bucket": "exports",
            "s3Prefix": prefix,
            "s3SseAlgorithm": "AES256",
            "billedSizeBytes": 0,
            "outputFormat": output_format,
        },
    )


def _table_arn(table: str) -> str:
    return f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{table}"


def change(
    keys: dict[str, Any],
    micros: int,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One line of an incremental export: insert (new), update (new and old), delete (old)."""
    line: dict[str, Any] = {"Metadata": {"WriteTimestampMicros": {"N": str(micros)}}, "Keys": keys}
    if old is not None:
        line["OldImage"] = old
    if new is not None:
        line["NewImage"] = new
    return line


def write_incremental_export(
    root: Path,
    table: str,
    files: list[list[dict[str, Any]]],
    from_ms: int,
    to_ms: int,
    *,
    prefix: str = "exports",
    view: str = "NEW_AND_OLD_IMAGES",
) -> ExportFiles:
    """An incremental export of `table` for [from_ms, to_ms); its data files go to the shared
    `AWSDynamoDB/data/` folder, as DynamoDB writes them."""
    export_id = f"{to_ms:014d}-{uuid.uuid4().hex[:8]}"
    return _write(
        root,
        prefix,
        export_id,
        "data",
        files,
        {
            "version": "2023-08-01",
            "exportArn": f"{_table_arn(table)}/export/{export_id}",
            "startTime": iso(to_ms + 5000),
            "endTime": iso(to_ms + 60_000),
            "tableArn": _table_arn(table),
            "tableId": str(uuid.uuid4()),
            "exportFromTime": iso(from_ms),
            "exportToTime": iso(to_ms),
            "s3Bucket": "exports",
            "s3Prefix": prefix,
            "s3SseAlgorithm": "AES256",
            "billedSizeBytes": 0,
            "exportType": "INCREMENTAL_EXPORT",
            "outputFormat": "DYNAMODB_JSON",
            "outputView": view,
        },
    )


# --- S3 -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """moto's S3 server on a free port, for the session."""
    with moto_server() as url:
        yield url


def s3_client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def upload_tree(s3: Any, bucket: str, root: Path) -> None:
    """Every file under `root` to the same key in `bucket` (created if missing)."""
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.put_object(
                Bucket=bucket, Key=path.relative_to(root).as_posix(), Body=path.read_bytes()
            )
