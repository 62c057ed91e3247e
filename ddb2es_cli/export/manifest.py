"""The two manifests of an export: `manifest-summary.json` (what kind of export, of when, how many
items) and `manifest-files.json` (one JSON object per line: a data file, its item count and the
base64 MD5 of its gzip bytes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ddb2es_cli.export.location import ExportError, Location

FULL_EXPORT = "FULL_EXPORT"
INCREMENTAL_EXPORT = "INCREMENTAL_EXPORT"
DYNAMODB_JSON = "DYNAMODB_JSON"
NEW_AND_OLD_IMAGES = "NEW_AND_OLD_IMAGES"


@dataclass(frozen=True)
class DataFile:
    number: int  # position in manifest-files.json: the unit of work ("segment")
    key: str  # dataFileS3Key
    item_count: int
    md5: str  # base64 MD5 of the gzip object

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Export:
    url: str
    location: Location
    export_type: str
    output_format: str
    item_count: int
    export_time_ms: int  # full: the snapshot's time; incremental: exportToTime
    from_time_ms: int | None
    to_time_ms: int | None
    output_view: str | None
    version: str
    table_arn: str | None
    files: tuple[DataFile, ...]

    @property
    def incremental(self) -> bool:
        return self.export_type == INCREMENTAL_EXPORT

    @property
    def table(self) -> str | None:
        """The table name from the summary's tableArn (`...:table/NAME`)."""
        if not self.table_arn or ":table/" not in self.table_arn:
            return None
        return self.table_arn.split(":table/", 1)[1].split("/", 1)[0]


def time_ms(value: Any, what: str, url: str) -> int:
    """An ISO time of a manifest (`2020-11-04T07:28:34.028Z`) in epoch milliseconds, exactly."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ExportError(f"{url}: manifest-summary.json: {what} {value!r} is not a time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def load_export(location: Location) -> Export:
    """Both manifests, checked against each other; refuses what ddb2es cannot apply exactly."""
    url = location.url
    try:
        summary = json.loads(location.read_text("manifest-summary.json"))
    except ValueError:
        raise ExportError(f"{url}: manifest-summary.json is not JSON") from None
    if not isinstance(summary, dict):
        raise ExportError(f"{url}: manifest-summary.json is not a JSON object")
    output_format = str(summary.get("outputFormat", DYNAMODB_JSON))
    if output_format != DYNAMODB_JSON:
        raise ExportError(
            f"{url} is an {output_format} export; ddb2es reads DYNAMODB_JSON exports only: "
            "request one with ExportFormat DYNAMODB_JSON (`ddb2es export start` does)"
        )
    export_type = str(summary.get("exportType", FULL_EXPORT))
    if export_type not in (FULL_EXPORT, INCREMENTAL_EXPORT):
        raise ExportError(f"{url}: unknown exportType {export_type!r}")
    files = _files(location)
    listed = sum(f.item_count for f in files)
    try:
        item_count = int(summary["itemCount"])
    except (KeyError, TypeError, ValueError):
        raise ExportError(f"{url}: manifest-summary.json has no itemCount") from None
    if listed != item_count:
        raise ExportError(
            f"{url}: manifest-summary.json counts {item_count} items but manifest-files.json "
            f"lists {listed}: the export is incomplete or its manifests do not belong together"
        )
    incremental = export_type == INCREMENTAL_EXPORT
    from_ms = time_ms(summary.get("exportFromTime"), "exportFromTime", url) if incremental else None
    to_ms = time_ms(summary.get("exportToTime"), "exportToTime", url) if incremental else None
    if incremental:
        assert to_ms is not None
        export_ms = to_ms
    else:
        export_ms = time_ms(summary.get("exportTime"), "exportTime", url)
    return Export(
        url=url,
        location=location,
        export_type=export_type,
        output_format=output_format,
        item_count=item_count,
        export_time_ms=export_ms,
        from_time_ms=from_ms,
        to_time_ms=to_ms,
        output_view=summary.get("outputView"),
        version=str(summary.get("version", "")),
        table_arn=summary.get("tableArn"),
        files=files,
    )


def _files(location: Location) -> tuple[DataFile, ...]:
    out: list[DataFile] = []
    text = location.read_text("manifest-files.json")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            out.append(
                DataFile(
                    number=len(out),
                    key=str(entry["dataFileS3Key"]),
                    item_count=int(entry["itemCount"]),
                    md5=str(entry["md5Checksum"]),
                )
            )
        except (ValueError, KeyError, TypeError):
            raise ExportError(
                f"{location.url}: manifest-files.json line {number} is not a data file entry "
                "(dataFileS3Key, itemCount, md5Checksum)"
            ) from None
    return tuple(out)
