"""deploy/sam and deploy/terraform, checked offline: cfn-lint (SAM's schemas) on the template,
python-hcl2 on the module; both must name every resource and setting docs/deploy.md recommends,
and agree with the handler (metric names, dimension, environment variables)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import pytest
from cfnlint.decode import decode

from ddb2es_cli.stream_observe import DIMENSION, METRICS, NAMESPACE

ROOT = Path(__file__).resolve().parent.parent
SAM = ROOT / "deploy" / "sam" / "template.yaml"
TERRAFORM = ROOT / "deploy" / "terraform"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"

STREAM_ACTIONS = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}
# What the handler sends: GET / and _alias, PUT /<index>, POST /_bulk (deletes too). No more.
SEARCH_ACTIONS = {"es:ESHttpGet", "es:ESHttpPut", "es:ESHttpPost"}
ENVIRONMENT = {
    "DDB2ES_ES_URL",
    "DDB2ES_ES_AUTH",
    "DDB2ES_INDEX_PREFIX",
    "DDB2ES_DEPLOYMENT",
    "DDB2ES_FAILURE_DESTINATION",
    "DDB2ES_LOG_LEVEL",
    "POWERTOOLS_METRICS_NAMESPACE",
}


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFN_LINT), "--regions", "us-east-1", "--", str(path)],
        capture_output=True,
        text=True,
        timeout=240,
    )


# --- SAM ------------------------------------------------------------------------------------------


def test_the_sam_template_passes_cfn_lint_with_its_transform() -> None:
    done = cfn_lint(SAM)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cfn_lint_really_checks_the_serverless_resources(tmp_path: Path) -> None:
    """cfn-lint 1.x checks AWS::Serverless resources against SAM's schemas instead of running the
    transform; it does not look into event properties, which the next test checks itself."""
    broken = tmp_path / "template.yaml"
    text = SAM.read_text().replace("MemorySize: 512", "MemorySize: lots")
    broken.write_text(text.replace("Handler: ddb2es_cli.stream", "Handlr: ddb2es_cli.stream"))
    done = cfn_lint(broken)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "'lots' is not of type 'integer'" in done.stdout and "Handlr" in done.stdout


def sam() -> Any:
    template, problems = decode(str(SAM))
    assert not problems
    return template


def test_the_sam_mapping_role_and_alarms_are_the_recommended_ones() -> None:
    resources = sam()["Resources"]
    function = resources["Handler"]["Properties"]
    assert function["Handler"] == "ddb2es_cli.stream.lambda_handler"
    assert set(function["Environment"]["Variables"]) >= ENVIRONMENT
    assert "Policies" not in function  # SAM would add a managed policy on every stream
    event = function["Events"]["Stream"]
    assert event["Type"] == "DynamoDB"
    mapping = event["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["MaximumRetryAttempts"] == -1 and mapping["MaximumRecordAgeInSeconds"] == -1
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["ExpiredRecords", "Arn"]
    }
    statements = resources["HandlerRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    actions = {a for s in statements["Statement"] for a in s["Action"]}
    assert STREAM_ACTIONS | {"dynamodb:ListStreams"} <= actions
    assert {a for a in actions if a.startswith("es:")} == SEARCH_ACTIONS
    assert not [a for a in actions if a.endswith("*")]
    alarms = {
        r["Properties"]["MetricName"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert set(alarms) == {
        "ReplicationLag",
        "PermanentFailures",
        "IteratorAge",
        "ApproximateNumberOfMessagesVisible",
    }
    for name in ("ReplicationLag", "PermanentFailures"):
        assert name in METRICS
        assert [d["Name"] for d in alarms[name]["Dimensions"]] == [DIMENSION]
        assert sam()["Parameters"]["MetricsNamespace"]["Default"] == NAMESPACE


# --- Terraform ------------------------------------------------------------------------------------


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels (v7+): drop them."""
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def terraform() -> dict[str, dict[str, dict[str, Any]]]:
    """kind ("resource", "data", "variable", "output") -> type or name -> ... as parsed."""
    blocks: dict[str, dict[str, Any]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            parsed = _unquote(hcl2.load(handle))
        for kind, entries in parsed.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                for name, body in entry.items():
                    if kind in ("resource", "data"):
                        blocks.setdefault(kind, {}).setdefault(name, {}).update(body)
                    else:
                        blocks.setdefault(kind, {})[name] = body
    return blocks


def test_the_terraform_module_parses_and_names_every_resource() -> None:
    tf = terraform()
    resources = tf["resource"]
    assert {
        "aws_lambda_function",
        "aws_iam_role",
        "aws_iam_role_policy",
        "aws_lambda_event_source_mapping",
        "aws_sqs_queue",
        "aws_cloudwatch_metric_alarm",
        "aws_cloudwatch_log_group",
    } <= set(resources)
    function = resources["aws_lambda_function"]["handler"]
    assert function["handler"] == "ddb2es_cli.stream.lambda_handler"
    assert set(first(function["environment"])["variables"]) >= ENVIRONMENT
    mapping = resources["aws_lambda_event_source_mapping"]["stream"]
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["maximum_retry_attempts"] == -1
    assert mapping["maximum_record_age_in_seconds"] == -1
    assert mapping["bisect_batch_on_function_error"] is True
    on_failure = first(first(mapping["destination_config"])["on_failure"])
    assert "aws_sqs_queue.expired_records.arn" in on_failure["destination_arn"]
    assert {"permanent_failures", "expired_records"} <= set(resources["aws_sqs_queue"])
    for name in ("table_stream_arn", "domain_arn", "search_url", "alarm_actions"):
        assert name in tf["variable"]
    assert {"function_arn", "role_arn", "permanent_failures_queue_url"} <= set(tf["output"])


def first(value: Any) -> Any:
    """A nested block: a list of one dict in python-hcl2's output."""
    return value[0] if isinstance(value, list) else value


def test_the_terraform_role_grants_exactly_what_the_handler_does() -> None:
    policy = terraform()["data"]["aws_iam_policy_document"]["handler"]
    statements = {s["sid"]: s for s in policy["statement"]}
    actions = {a for s in statements.values() for a in s["actions"]}
    assert STREAM_ACTIONS | {"dynamodb:ListStreams"} <= actions
    assert {a for a in actions if a.startswith("es:")} == SEARCH_ACTIONS
    assert not [a for a in actions if a.endswith("*")]
    assert statements["ReadTheStream"]["resources"] == ["${var.table_stream_arn}"]
    assert statements["SearchBulk"]["resources"] == ["${var.domain_arn}/_bulk"]


@pytest.mark.parametrize("metric", ["ReplicationLag", "PermanentFailures"])
def test_the_terraform_alarms_watch_the_handlers_metrics(metric: str) -> None:
    alarms = terraform()["resource"]["aws_cloudwatch_metric_alarm"].values()
    (alarm,) = [a for a in alarms if a["metric_name"] == metric]
    assert metric in METRICS
    assert alarm["namespace"] == "${var.metrics_namespace}"
    assert set(first(alarm["dimensions"])) == {DIMENSION}
    variables = terraform()["variable"]
    assert variables["metrics_namespace"]["default"] == NAMESPACE
