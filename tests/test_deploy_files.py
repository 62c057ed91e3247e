"""The deployment files, checked offline (no Docker, no cloud here): the Dockerfile's promises, the
examples parse, the IAM policies grant exactly what the workers need, and every command line in
them and in docs/scale-out.md is a real ddb2es command with real options."""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from ddb2es_cli.cli import cli

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs" / "scale-out.md"
IMAGE_UID = "10001"


# --- command lines -------------------------------------------------------------------------------


def _command(path: tuple[str, ...]) -> click.Command | None:
    command: click.Command | None = cli
    for name in path:
        if not isinstance(command, click.Group):
            return None
        with click.Context(command) as ctx:  # get_command: the top level loads lazily
            command = command.get_command(ctx, name)
    return command


def _options(command: click.Command | None) -> dict[str, bool]:
    """Every option string of a command -> whether it takes a value."""
    found: dict[str, bool] = {"--help": False, "-h": False}
    for param in command.params if command else ():
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                found[name] = not (param.is_flag or param.count)
    return found


def check_command_line(argv: list[str]) -> None:
    """Raise AssertionError unless `ddb2es <argv>` parses as a real command."""
    args = list(argv)
    globals_ = _options(cli)
    while args and args[0].startswith("-"):
        option = args.pop(0)
        name = option.split("=", 1)[0]
        assert name in globals_, f"unknown global option {name} in {argv}"
        if globals_[name] and "=" not in option:
            args.pop(0)
    if not args:
        assert argv[-1:] == ["--help"], f"no command in {argv}"
        return
    path: tuple[str, ...] = ()
    command: click.Command | None = cli
    while isinstance(command, click.Group):
        assert args, f"`ddb2es {' '.join(path)}` needs a subcommand ({argv})"
        name = args[0]
        if path == ("reload",) and name not in ("run", "rollback"):
            name = "run"  # `reload TABLE` is `reload run TABLE`
        else:
            args.pop(0)
        path += (name,)
        command = _command(path)
        if command is None:
            raise AssertionError(f"no command `ddb2es {' '.join(path)}` ({argv})")
    known = _options(command)
    while args:
        token = args.pop(0)
        if not token.startswith("-"):
            continue  # TABLE arguments and placeholders
        name = token.split("=", 1)[0]
        assert name in known, f"`ddb2es {' '.join(path)}` has no option {name} ({argv})"
        if known[name] and "=" not in token:
            assert args, f"{name} needs a value in {argv}"
            args.pop(0)


def _doc_command_lines() -> Iterator[list[str]]:
    """`ddb2es ...` lines of the code blocks of docs/scale-out.md."""
    in_block = False
    for line in DOCS.read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        text = line.removeprefix("$ ").strip()
        if not in_block:
            continue
        if text.startswith("ddb2es "):
            yield shlex.split(text, comments=True)[1:]
        elif text.startswith("docker run "):  # the arguments after the image
            words = shlex.split(text, comments=True)
            image = next(i for i, w in enumerate(words) if w.startswith("ddb2es:"))
            yield words[image + 1 :]


def _k8s_documents() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "reindex-job.yaml").read_text()) if d]
    return docs


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return containers


def _json(relative: str) -> Any:
    return json.loads((DEPLOY / relative).read_text())


def deploy_command_lines() -> dict[str, list[str]]:
    """Every container command of the examples (the image's entrypoint is `ddb2es`)."""
    lines: dict[str, list[str]] = {}
    for doc in _k8s_documents():
        if doc["kind"] == "Job":
            for c in _containers(doc):
                lines[f"k8s {doc['metadata']['name']}"] = c["args"]
    lines["batch"] = _json("batch/job-definition.json")["containerProperties"]["command"]
    lines["ecs task"] = _json("ecs/task-definition.json")["containerDefinitions"][0]["command"]
    run_task = _json("ecs/run-task.json")
    lines["ecs run-task"] = run_task["overrides"]["containerOverrides"][0]["command"]
    return lines


def test_the_checker_refuses_what_does_not_exist() -> None:
    check_command_line(["--config", "x.toml", "reindex", "t", "--segments", "8", "--dry-run"])
    check_command_line(["reload", "t", "--strategy", "delete", "--processes", "2"])
    check_command_line(["reload", "rollback", "t", "--yes"])
    check_command_line(["state", "init", "--table", "s"])
    for bad in (
        ["reindex", "t", "--segmints", "8"],
        ["reindex", "t", "--max-rcu"],
        ["--no-such-global", "reindex"],
        ["reindexx", "t"],
        ["state", "drop"],
        ["reload", "rollback", "t", "--processes", "2"],
    ):
        with pytest.raises(AssertionError):
            check_command_line(bad)


@pytest.mark.parametrize("where", sorted(deploy_command_lines()))
def test_every_deploy_command_is_a_real_command(where: str) -> None:
    check_command_line(deploy_command_lines()[where])


def test_every_command_in_the_scale_out_doc_is_a_real_command() -> None:
    lines = list(_doc_command_lines())
    assert len(lines) >= 7
    for argv in lines:
        check_command_line(argv)


# --- examples parse and agree with the image ---------------------------------------------------


def test_every_json_example_parses() -> None:
    files = sorted(DEPLOY.rglob("*.json"))
    assert len(files) >= 5
    for path in files:
        assert isinstance(json.loads(path.read_text()), dict), path


def test_the_kubernetes_manifest_starts_one_run_and_indexed_workers_that_join_it() -> None:
    docs = _k8s_documents()
    assert {d["kind"] for d in docs} == {"ServiceAccount", "ConfigMap", "Job"}
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}
    start, workers = jobs["ddb2es-reindex-start"], jobs["ddb2es-reindex-workers"]
    assert "--processes" in _containers(start)[0]["args"]
    assert workers["spec"]["completionMode"] == "Indexed"
    assert workers["spec"]["parallelism"] == workers["spec"]["completions"] > 1
    (container,) = _containers(workers)
    assert container["args"][:2] == ["reindex", "--join"]
    run_id = next(e for e in container["env"] if e["name"] == "RUN_ID")
    assert run_id["valueFrom"]["configMapKeyRef"]["name"] == "ddb2es-run"
    assert start["spec"]["backoffLimit"] == 0, "a retried start would start a second run"
    for job in jobs.values():
        pod = job["spec"]["template"]["spec"]
        if "backoffLimitPerIndex" in job["spec"] or "podFailurePolicy" in job["spec"]:
            assert pod["restartPolicy"] == "Never", "Kubernetes refuses them with OnFailure"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == IMAGE_UID
        env = {e["name"]: e.get("value") for e in _containers(job)[0]["env"]}
        assert env["DDB2ES_CONFIG"] == "/etc/ddb2es/ddb2es.toml"


def test_the_kubernetes_config_is_valid_toml_naming_the_state_table() -> None:
    config = next(d for d in _k8s_documents() if d["kind"] == "ConfigMap")
    parsed = tomllib.loads(config["data"]["ddb2es.toml"])
    assert parsed["state"]["table"] == "ddb2es-state"
    assert parsed["search"]["auth"] == "aws-sigv4"
    assert not re.search(r"password|api_key|secret", config["data"]["ddb2es.toml"], re.I)


def test_batch_and_ecs_run_as_the_image_user_with_a_role_not_keys() -> None:
    batch = _json("batch/job-definition.json")["containerProperties"]
    task = _json("ecs/task-definition.json")
    assert batch["user"] == task["containerDefinitions"][0]["user"] == IMAGE_UID
    assert "Ref::run_id" in batch["command"]
    assert batch["jobRoleArn"] and task["taskRoleArn"]
    for env in (batch["environment"], task["containerDefinitions"][0]["environment"]):
        assert not any("KEY" in e["name"] or "PASSWORD" in e["name"] for e in env)
    assert _json("ecs/run-task.json")["count"] <= 10  # run-task's own limit


# --- IAM -----------------------------------------------------------------------------------------

STATE_ACTIONS = {
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
}
DATA_ACTIONS = {"dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:BatchGetItem"}
SEARCH_ACTIONS = {f"es:ESHttp{m}" for m in ("Get", "Head", "Post", "Put", "Delete")}


def _statements(name: str) -> dict[str, dict[str, Any]]:
    policy = _json(f"iam/{name}")
    assert policy["Version"] == "2012-10-17"
    statements = {s["Sid"]: s for s in policy["Statement"]}
    for s in statements.values():
        assert s["Effect"] == "Allow"
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        assert "*" not in resources, f"{s['Sid']} grants on every resource"
        assert not any("*" in a for a in s["Action"]), f"{s['Sid']} has a wildcard action"
    return statements


def test_the_worker_policy_grants_exactly_what_a_worker_needs() -> None:
    statements = _statements("worker-policy.json")
    assert set(statements) == {"StateTable", "DataTables", "SearchDomain"}
    assert set(statements["StateTable"]["Action"]) == STATE_ACTIONS
    assert statements["StateTable"]["Resource"].endswith(":table/ddb2es-state")
    assert set(statements["DataTables"]["Action"]) == DATA_ACTIONS
    assert set(statements["SearchDomain"]["Action"]) == SEARCH_ACTIONS
    assert re.fullmatch(
        r"arn:aws:es:[^:]+:\d{12}:domain/[^/]+/\*", statements["SearchDomain"]["Resource"]
    )


def test_the_state_init_policy_only_creates_the_state_table() -> None:
    statements = _statements("state-init-policy.json")
    (only,) = statements.values()
    assert set(only["Action"]) == {"dynamodb:CreateTable", "dynamodb:DescribeTable"}
    assert only["Resource"].endswith(":table/ddb2es-state")


def test_the_doc_lists_the_same_actions_as_the_policies() -> None:
    text = DOCS.read_text()
    for action in STATE_ACTIONS | DATA_ACTIONS | SEARCH_ACTIONS:
        assert action.split(":")[1] in text, action


# --- Dockerfile ----------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _base_images() -> list[str]:
    args: dict[str, str] = {}
    images = []
    for word, rest in _dockerfile():
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
        if word == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
    return images


def test_the_image_is_multi_stage_on_a_pinned_slim_python() -> None:
    images = _base_images()
    assert len(images) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in images:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), (
            f"{image}: pin an exact python slim tag"
        )
    froms = [rest for word, rest in _dockerfile() if word == "FROM"]
    assert re.search(r"\bAS build\b", froms[0], re.I)


def test_the_image_runs_ddb2es_as_a_user_that_is_not_root() -> None:
    instructions = _dockerfile()
    users = [rest for word, rest in instructions if word == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user == IMAGE_UID
    (entrypoint,) = [rest for word, rest in instructions if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["ddb2es"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "ddb2es" in pyproject["project"]["scripts"]


def test_the_image_takes_its_dependencies_from_pyproject() -> None:
    instructions = _dockerfile()
    copies = " ".join(rest for word, rest in instructions if word == "COPY")
    assert "pyproject.toml" in copies and "ddb2es_cli" in copies
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "pip wheel" in runs and "--no-index" in runs  # the wheel, then only its wheels
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for requirement in pyproject["project"]["dependencies"]:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        assert not re.search(rf"\b{re.escape(name)}\b", runs), f"{name} pinned outside pyproject"
    assert not re.search(r"\[(local|test)\]", runs), "no test or local-server extras"


def test_the_image_holds_no_secret_and_no_state() -> None:
    for word, rest in _dockerfile():
        if word in ("ENV", "ARG"):
            assert not re.search(r"KEY|SECRET|PASSWORD|TOKEN", rest, re.I), rest
        if word in ("COPY", "ADD", "RUN", "VOLUME", "WORKDIR"):
            assert ".ddb2es" not in rest and "ddb2es.toml" not in rest, rest
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", ".ddb2es", "ddb2es.toml"} <= ignored
