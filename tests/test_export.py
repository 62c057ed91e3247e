"""Rebuilds from DynamoDB table exports (local folder and S3), against the real local servers."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ddb2es_cli.checkpoint import RunState
from ddb2es_cli.cli import cli
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.export.incremental import apply_exports, stream_record
from ddb2es_cli.export.location import ByteLimiter, ExportError, open_location
from ddb2es_cli.export.manifest import load_export
from ddb2es_cli.export.rebuild import export_source
from ddb2es_cli.reindex import run_reindex
from ddb2es_cli.stream import StreamConfig, StreamResult, apply_batch, plan_batch
from ddb2es_cli.transform import TableShape, scan_version, to_document
from tests.conftest import Stack
from tests.export_fixtures import (
    ExportFiles,
    change,
    json_shape,
    s3_client,
    s3_url,  # noqa: F401 (the fixture)
    upload_tree,
    write_full_export,
    write_incremental_export,
)
from tests.faults import ClientWrapper
from tests.test_reindex import options, sample_items, wait_for_a_checkpoint

HOUR_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


def all_sources(es_url: str, prefix: str) -> dict[tuple[str, str], Any]:
    """Every stored document of the test's indices as GET returns it: numbers exact, key order
    kept (a search may re-render numbers)."""
    urllib.request.urlopen(
        urllib.request.Request(f"{es_url}/{prefix}*/_refresh", method="POST")
    ).close()
    with urllib.request.urlopen(f"{es_url}/{prefix}*/_search?size=10000&_source=false") as resp:
        hits = json.loads(resp.read())["hits"]["hits"]
    found = {}
    for hit in hits:
        quoted = urllib.parse.quote(hit["_id"], safe="")
        with urllib.request.urlopen(f"{es_url}/{hit['_index']}/_doc/{quoted}") as resp:
            body = json.loads(resp.read(), parse_float=Decimal, object_pairs_hook=list)
        found[(hit["_index"], hit["_id"])] = dict(body)["_source"]
    return found


def expected_sources(items: list[dict[str, Any]], prefix: str) -> dict[tuple[str, str], Any]:
    shape = TableShape("pk", index_prefix=prefix)
    out = {}
    for item in items:
        doc = to_document(item, shape)
        source = json.loads(doc.source, parse_float=Decimal, object_pairs_hook=list)
        out[(doc.index, doc.id)] = source
    return out


def version_of(es_url: str, index: str, doc_id: str) -> int:
    quoted = urllib.parse.quote(doc_id, safe="")
    with urllib.request.urlopen(f"{es_url}/{index}/_doc/{quoted}") as resp:
        return int(json.loads(resp.read())["_version"])


def rebuild(stack: Stack, tmp_path: Path, table: str, url: str, **opts: Any) -> Any:
    settings = stack.settings(table)
    run_options = options(tmp_path, **opts)
    source = export_source(url, table, lambda: None, workers=run_options.segments, page_limit=20)
    run_options.segments = source.segments
    return run_reindex(
        stack.ddb, stack.es, settings, list(settings.tables), run_options, None, source.pages_from
    )


def run_cli(stack: Stack, tmp_path: Path, table: str, *args: str) -> Result:
    config = str(stack.config_file(tmp_path, table))
    return CliRunner().invoke(
        cli, ["--config", config, "--quiet", *args], env=stack.cli_env(), catch_exceptions=False
    )


def error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


# --- full exports ----------------------------------------------------------------------------


def test_export_documents_equal_scan_documents(any_stack: Stack, tmp_path: Path) -> None:
    stack = any_stack
    table = stack.create_table("exact")
    items = sample_items(60)
    stack.put_items(table, items)
    settings = stack.settings(table)
    scanned = run_reindex(
        stack.ddb, stack.es, settings, list(settings.tables), options(tmp_path / "scan")
    )
    assert scanned.failures == 0
    by_scan = all_sources(stack.es_url, stack.prefix)
    for index in stack.indices():
        stack.es.indices.delete(index=index)
    taken = now_ms() - HOUR_MS
    # Several files, one of them empty (an empty partition).
    export = write_full_export(
        tmp_path / "bucket", table, [items[:25], [], items[25:50], items[50:]], taken
    )
    summary = rebuild(stack, tmp_path, table, export.url)
    assert summary.failures == 0 and summary.tables[table].rcu == 0
    by_export = all_sources(stack.es_url, stack.prefix)
    assert by_export == by_scan
    if "elasticsearch" not in type(stack.es).__module__:  # the ES stand-in stores doubles
        assert by_export == expected_sources(items, stack.prefix)
    index, doc_id = next(iter(by_export))
    assert version_of(stack.es_url, index, doc_id) == scan_version(
        taken, settings.version_overlap_ms
    )


def test_reindex_from_an_s3_export_through_the_cli(
    stack: Stack,
    tmp_path: Path,
    s3_url: str,  # noqa: F811 (the fixture)
) -> None:
    table = stack.create_table("s3")
    items = sample_items(30)
    stack.put_items(table, items[:1])  # the table only gives the key schema
    export = write_full_export(tmp_path / "bucket", table, [items[:10], [], items[10:]], now_ms())
    upload_tree(s3_client(s3_url), "exports", tmp_path / "bucket")
    result = run_cli(
        stack,
        tmp_path,
        table,
        "reindex",
        table,
        "--from-export",
        export.s3_url("exports"),
        "--s3-endpoint",
        s3_url,
        "--json",
    )
    assert result.exit_code == 0, result.output + result.stderr
    summary = json.loads(result.stdout)
    assert summary["tables"][0]["scanned"] == 30 and summary["tables"][0]["rcu"] == 0
    assert all_sources(stack.es_url, stack.prefix) == expected_sources(items, stack.prefix)


def test_stream_writes_newer_than_the_export_win_older_ones_lose(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("versions")
    items = sample_items(2, types=("Order",))
    stack.put_items(table, items)
    taken = now_ms() - HOUR_MS
    overlap = stack.settings(table).version_overlap_ms
    newer = {**items[0], "amount": {"N": "111"}}
    older = {**items[1], "amount": {"N": "222"}}
    records = [
        stream_event(table, newer, (taken + 10_000) * 1000, "1"),
        stream_event(table, older, (taken - overlap - 10_000) * 1000, "2"),
    ]
    applied = apply_batch(stack.es, records, StreamConfig(index_prefix=stack.prefix))
    assert applied.indexed == 2
    export = write_full_export(tmp_path / "bucket", table, [items], taken)
    summary = rebuild(stack, tmp_path, table, export.url)
    assert summary.tables[table].conflicts == 1 and summary.tables[table].indexed == 1
    expected = expected_sources([newer, items[1]], stack.prefix)
    assert all_sources(stack.es_url, stack.prefix) == expected


def stream_event(table: str, item: dict[str, Any], micros: int, sequence: str) -> dict[str, Any]:
    """A stream INSERT record as the Lambda receives it."""
    return {
        "eventName": "INSERT",
        "eventSourceARN": f"arn:aws:dynamodb:us-east-1:1:table/{table}/stream/x",
        "dynamodb": {
            "Keys": {"pk": json_shape(item["pk"])},
            "NewImage": json_shape(item),
            "ApproximateCreationDateTime": micros / 1_000_000,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "SequenceNumber": sequence,
        },
    }


# --- damaged exports -----------------------------------------------------------------------------


def damaged_export(tmp_path: Path, table: str, damage: str) -> ExportFiles:
    items = sample_items(30, types=("Order",))
    export = write_full_export(tmp_path / "bucket", table, [items[:10], items[10:]], now_ms())
    path = export.data_files()[1]
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    if damage == "md5":
        export.rewrite_manifest_entry(1, md5Checksum="1B2M2Y8AsgTpgAmY7PhCfg==")
    elif damage == "count":
        export.rewrite_manifest_entry(1, itemCount=21)
        summary_path = export.folder / "manifest-summary.json"
        summary = json.loads(summary_path.read_text())
        summary_path.write_text(json.dumps({**summary, "itemCount": 31}))
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        export.reseal(1)
    elif damage == "no-item":
        lines[2] = json.dumps({"Keys": {"pk": {"S": "x"}}})
        path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
        export.reseal(1)
    elif damage == "malformed":
        lines[4] = lines[4][:-7]
        path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
        export.reseal(1)
    return export


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("md5", "MD5"),
        ("count", "21"),
        ("truncated", "is truncated"),
        ("no-item", "line 3 has no Item"),
        ("malformed", "line 5 is not JSON"),
    ],
)
def test_a_damaged_data_file_is_one_line_and_never_marked_done(
    stack: Stack, tmp_path: Path, damage: str, says: str
) -> None:
    table = stack.create_table("damaged")
    export = damaged_export(tmp_path, table, damage)
    state = tmp_path / "state.json"
    result = run_cli(
        stack,
        tmp_path,
        table,
        "reindex",
        table,
        "--from-export",
        export.url,
        "--segments",
        "1",
        "--state-file",
        str(state),
    )
    assert result.exit_code == 1
    line = error_line(result)
    assert says in line and export.data_files()[1].name in line
    saved = RunState.load(state)
    assert saved is not None
    assert not saved.tables[table][1].done  # the damaged file is never reported done


def test_summary_count_differing_from_the_files_is_refused(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("counts")
    export = write_full_export(tmp_path / "b", table, [sample_items(3)], now_ms())
    summary_path = export.folder / "manifest-summary.json"
    summary_path.write_text(json.dumps({**json.loads(summary_path.read_text()), "itemCount": 4}))
    result = run_cli(stack, tmp_path, table, "reindex", table, "--from-export", export.url)
    assert result.exit_code == 1
    assert "counts 4 items but manifest-files.json lists 3" in error_line(result)
    assert stack.indices() == []


def test_ion_exports_are_refused_with_one_line(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("ion")
    export = write_full_export(
        tmp_path / "b", table, [sample_items(3)], now_ms(), output_format="ION"
    )
    result = run_cli(stack, tmp_path, table, "reindex", table, "--from-export", export.url)
    assert result.exit_code == 1
    assert "request one with ExportFormat DYNAMODB_JSON" in error_line(result)


def test_md5_mismatch_in_s3_is_one_line(
    stack: Stack,
    tmp_path: Path,
    s3_url: str,  # noqa: F811 (the fixture)
) -> None:
    table = stack.create_table("s3md5")
    export = damaged_export(tmp_path, table, "md5")
    upload_tree(s3_client(s3_url), "damaged", tmp_path / "bucket")
    result = run_cli(
        stack,
        tmp_path,
        table,
        "reindex",
        table,
        "--from-export",
        export.s3_url("damaged"),
        "--s3-endpoint",
        s3_url,
    )
    assert result.exit_code == 1
    line = error_line(result)
    assert "MD5" in line and export.data_files()[1].name in line


# --- kill -9 and --resume ------------------------------------------------------------------------


def test_resume_after_kill_9_ends_with_every_document_once(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("killed")
    total = 3000
    items = sample_items(total, types=("k",))
    export = write_full_export(
        tmp_path / "bucket", table, [items[n : n + 300] for n in range(0, total, 300)], now_ms()
    )
    state = tmp_path / "state.json"
    args = [
        sys.executable,
        "-m",
        "ddb2es_cli",
        "--config",
        str(stack.config_file(tmp_path, table)),
        "--quiet",
        "reindex",
        table,
        "--from-export",
        export.url,
        "--segments",
        "2",
        "--page-size",
        "20",
        "--chunk-size",
        "20",
        "--state-file",
        str(state),
        "--failures",
        str(tmp_path / "f.ndjson"),
    ]
    env = {**os.environ, **stack.cli_env()}
    # Some 10 KB/s: the run takes seconds whatever the machine, so it can be stopped half-way.
    proc = subprocess.Popen([*args, "--max-read-mbps", "0.01"], env=env, cwd=tmp_path)
    wait_for_a_checkpoint(state)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = RunState.load(state)
    assert saved is not None and saved.unfinished(), "killed too late: the run had finished"
    resumed = subprocess.run(
        [*args, "--resume", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["resumed"] is True
    assert summary["tables"][0]["scanned"] < total  # acknowledged lines were not sent again
    assert all_sources(stack.es_url, stack.prefix) == expected_sources(items, stack.prefix)


# --- incremental exports -------------------------------------------------------------------------


def test_incremental_exports_apply_upserts_deletes_and_type_changes(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("incremental")
    items = sample_items(4, types=("Order",))
    stack.put_items(table, items[:1])
    t0 = now_ms() - 3 * HOUR_MS
    t1, t2 = t0 + HOUR_MS, t0 + 2 * HOUR_MS
    full = write_full_export(tmp_path / "bucket", table, [items], t0)
    assert rebuild(stack, tmp_path, table, full.url).failures == 0
    k = [{"pk": i["pk"]} for i in items]
    changed = {**items[0], "amount": {"N": "1.000"}}
    retyped = {**items[1], "TYPE": {"S": "invoice"}}
    added = {**sample_items(5, types=("Order",))[4]}
    added_later = {**added, "amount": {"N": "-0.5"}}
    first = write_incremental_export(
        tmp_path / "bucket",
        table,
        [
            [change(k[0], t0 * 1000 + 1_000_123, new=changed, old=items[0])],
            [
                change(k[1], t0 * 1000 + 2_000_000, new=retyped, old=items[1]),
                change({"pk": added["pk"]}, t0 * 1000 + 3_000_000, new=added),
            ],
        ],
        t0,
        t1,
    )
    second = write_incremental_export(
        tmp_path / "bucket",
        table,
        [
            [change(k[2], t1 * 1000 + 5, old=items[2])],
            [],
            [change({"pk": added["pk"]}, t1 * 1000 + 7, new=added_later, old=added)],
        ],
        t1,
        t2,
    )
    result = run_cli(stack, tmp_path, table, "apply-export", second.url, first.url, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads(result.stdout)["deleted"] == 2  # the TYPE change's old document and k2
    final = [changed, retyped, items[3], added_later]
    assert all_sources(stack.es_url, stack.prefix) == expected_sources(final, stack.prefix)
    doc = to_document(changed, TableShape("pk", index_prefix=stack.prefix))
    assert version_of(stack.es_url, doc.index, doc.id) == t0 * 1000 + 1_000_123
    again = run_cli(stack, tmp_path, table, "apply-export", first.url, second.url, "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["failures"] == 0  # same versions: the same documents again
    assert all_sources(stack.es_url, stack.prefix) == expected_sources(final, stack.prefix)


def test_a_gap_in_the_chain_is_refused_with_exit_2(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("gap")
    t0 = now_ms() - 3 * HOUR_MS
    item = sample_items(1)[0]
    first = write_incremental_export(
        tmp_path / "b",
        table,
        [[change({"pk": item["pk"]}, t0 * 1000 + 1, new=item)]],
        t0,
        t0 + HOUR_MS,
    )
    later = write_incremental_export(
        tmp_path / "b", table, [[]], t0 + HOUR_MS + 1000, t0 + 2 * HOUR_MS
    )
    result = run_cli(stack, tmp_path, table, "apply-export", first.url, later.url)
    assert result.exit_code == 2
    assert "do not form a chain" in error_line(result)
    assert stack.indices() == []


def test_an_incremental_write_time_is_the_version_to_the_microsecond() -> None:
    for micros in (1_700_000_000_123_457, 1_799_999_999_999_999, 1_600_000_000_000_001):
        record = stream_record(change({"pk": {"S": "a"}}, micros, new={"pk": {"S": "a"}}), "t", "1")
        ops = plan_batch([record], StreamConfig(), StreamResult())
        meta = next(iter(ops[0].action[0].values()))
        assert meta["version"] == micros


# --- export start --------------------------------------------------------------------------------


def test_export_start_against_dynamodb_local_is_one_line(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("start")
    result = run_cli(stack, tmp_path, table, "export", "start", table, "--s3-bucket", "b")
    assert result.exit_code == 2
    assert "does not support exports" in error_line(result)


class FailsBulkCall(ClientWrapper):
    """The real client, except that bulk calls from number `n` on raise as a lost connection
    does (the handler's writer retries for some seconds, then gives the records up)."""

    def __init__(self, client: Any, n: int) -> None:
        super().__init__(client)
        self.n, self.calls = n, 0

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls >= self.n:
            raise ConnectionError("connection lost (test)")
        return self._client.bulk(*args, **kwargs)


def test_apply_export_continues_where_a_failed_run_stopped(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("applyresume")
    t0 = now_ms() - 3 * HOUR_MS
    items = sample_items(50, types=("Order",))
    lines = [change({"pk": i["pk"]}, t0 * 1000 + n, new=i) for n, i in enumerate(items)]
    export = write_incremental_export(
        tmp_path / "b", table, [lines[:30], lines[30:]], t0, t0 + HOUR_MS
    )
    settings = stack.settings(table)
    loaded = [load_export(open_location(export.url, lambda: None))]
    state = tmp_path / "apply.json"
    broken = FailsBulkCall(stack.es, 4)  # batches of 10: the fourth is lines 31-40 (file 2)
    with pytest.raises(ExportError, match="progress is saved"):
        apply_exports(broken, settings, settings.tables[0], loaded, state_path=state, batch_size=10)
    saved = json.loads(state.read_text())["exports"][export.url]
    assert saved == {"0": {"line": 30, "done": True}}
    again = apply_exports(
        stack.es, settings, settings.tables[0], loaded, state_path=state, batch_size=10
    )
    assert again.resumed and again.records == 20 and again.indexed == 20
    assert all_sources(stack.es_url, stack.prefix) == expected_sources(items, stack.prefix)
    assert not state.exists()


def test_the_read_rate_limit_spreads_reads_over_time() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = ByteLimiter(1_000_000, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        limiter.wait()
        limiter.consume(500_000)
    limiter.wait()
    # 5 MB at 1 MB/s with a bucket of one second's bytes: 4 s of waiting.
    assert 3.99 <= now[0] <= 4.05


def test_the_s3_endpoint_comes_from_the_config_file(tmp_path: Path) -> None:
    from ddb2es_cli.config import load_settings

    path = tmp_path / "ddb2es.toml"
    path.write_text('[s3]\nendpoint = "http://127.0.0.1:9000"\n')
    assert load_settings(path, {}).s3_endpoint == "http://127.0.0.1:9000"
    path.write_text('[s3]\nendpont = "http://127.0.0.1:9000"\n')
    with pytest.raises(ConfigError, match="endpoint"):
        load_settings(path, {})


def moto_table(url: str, name: str, pitr: bool) -> None:
    import boto3

    ddb = boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    if pitr:
        ddb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


def export_start(url: str, *args: str) -> Result:
    env = {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": "us-east-1",
    }
    return CliRunner().invoke(cli, ["--dynamodb-endpoint", url, "export", "start", *args], env=env)


def test_export_start_without_point_in_time_recovery_is_one_line(
    s3_url: str,  # noqa: F811 (the fixture: moto also answers DynamoDB's export API)
) -> None:
    moto_table(s3_url, "no-pitr", pitr=False)
    result = export_start(s3_url, "no-pitr", "--s3-bucket", "exports", "--s3-prefix", "p")
    assert result.exit_code == 2
    assert "point-in-time recovery off" in error_line(result)


def test_export_start_waits_for_the_export_and_prints_its_url(
    s3_url: str,  # noqa: F811 (the fixture)
) -> None:
    moto_table(s3_url, "with-pitr", pitr=True)
    s3_client(s3_url).create_bucket(Bucket="started")
    result = export_start(
        s3_url,
        "with-pitr",
        "--s3-bucket",
        "started",
        "--s3-prefix",
        "p",
        "--poll-seconds",
        "0.1",
        "--json",
    )
    assert result.exit_code == 0, result.output + result.stderr
    status = json.loads(result.stdout)
    assert status["status"] == "COMPLETED" and status["url"].startswith("s3://started/")


class BreaksStreams:
    """The real S3 client, except that the first body of each data file breaks after `after`
    bytes, as a reset connection does."""

    def __init__(self, client: Any, after: int) -> None:
        self.client, self.after = client, after
        self.ranges: list[str] = []

    def get_object(self, **kwargs: Any) -> Any:
        answer = self.client.get_object(**kwargs)
        if "Range" in kwargs:
            self.ranges.append(kwargs["Range"])
        elif kwargs["Key"].endswith(".json.gz"):
            answer["Body"] = _Breaking(answer["Body"], self.after)
        return answer


class _Breaking:
    def __init__(self, body: Any, after: int) -> None:
        self.body, self.left = body, after

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import ResponseStreamingError

        if self.left <= 0:
            raise ResponseStreamingError(error=ConnectionResetError("reset by the test"))
        data: bytes = self.body.read(self.left if size < 0 else min(size, self.left))
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.body.close()


def test_a_connection_reset_mid_file_reads_on_from_the_byte_reached(
    stack: Stack,
    tmp_path: Path,
    s3_url: str,  # noqa: F811 (the fixture)
) -> None:
    table = stack.create_table("reset")
    items = sample_items(400, types=("Order",))
    export = write_full_export(tmp_path / "bucket", table, [items[:200], items[200:]], now_ms())
    upload_tree(s3_client(s3_url), "resets", tmp_path / "bucket")
    broken = BreaksStreams(s3_client(s3_url), after=1000)
    settings = stack.settings(table)
    run_options = options(tmp_path)
    source = export_source(export.s3_url("resets"), table, lambda: broken, workers=2, page_limit=50)
    run_options.segments = source.segments
    summary = run_reindex(
        stack.ddb, stack.es, settings, list(settings.tables), run_options, None, source.pages_from
    )
    assert summary.failures == 0
    assert sorted(broken.ranges) == ["bytes=1000-", "bytes=1000-"]
    assert all_sources(stack.es_url, stack.prefix) == expected_sources(items, stack.prefix)


def test_apply_export_from_s3(
    stack: Stack,
    tmp_path: Path,
    s3_url: str,  # noqa: F811 (the fixture)
) -> None:
    table = stack.create_table("applys3")
    t0 = now_ms() - 3 * HOUR_MS
    items = sample_items(12, types=("Order", "invoice"))
    lines = [change({"pk": i["pk"]}, t0 * 1000 + n, new=i) for n, i in enumerate(items)]
    export = write_incremental_export(tmp_path / "b", table, [lines[:5], [], lines[5:]], t0, t0 + 1)
    upload_tree(s3_client(s3_url), "incremental", tmp_path / "b")
    result = run_cli(
        stack,
        tmp_path,
        table,
        "apply-export",
        export.s3_url("incremental"),
        "--s3-endpoint",
        s3_url,
        "--json",
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads(result.stdout)["indexed"] == 12
    assert all_sources(stack.es_url, stack.prefix) == expected_sources(items, stack.prefix)


def test_an_export_of_an_empty_table_finishes_with_nothing_to_do(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("emptyexport")
    export = write_full_export(tmp_path / "b", table, [], now_ms())
    summary = rebuild(stack, tmp_path, table, export.url)
    assert summary.failures == 0 and summary.tables[table].scanned == 0
    assert not (tmp_path / "state.json").exists()  # finished: the state file is gone
