"""The single-shard template: render, compare, apply, check, on both engines.

Every test uses its own template name and pattern (`<prefix>tpl`, `<prefix>*`), so tests never
see each other's templates, and deletes what it created.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from ddb2es_cli.clients import Engine, detect_engine
from ddb2es_cli.config import SearchSettings, Settings, TableSettings
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.template import (
    COMPOSABLE,
    DEFAULT_NAME,
    DEFAULT_PRIORITY,
    LEGACY,
    TemplateError,
    TemplateSpec,
    apply_template,
    check_template,
    diff,
    flavour,
    installed,
    normalise,
    render,
    template_spec,
)
from tests.conftest import Stack

NUMBER_TEMPLATES = [
    {"ddb2es_long_as_double": {"match_mapping_type": "long", "mapping": {"type": "double"}}},
    {"ddb2es_double_as_double": {"match_mapping_type": "double", "mapping": {"type": "double"}}},
]


# --- pure: spec, render, flavour, diff ----------------------------------------------------------


def test_spec_defaults_to_star_without_prefix() -> None:
    spec = template_spec(Settings())
    assert spec == TemplateSpec()
    assert (spec.name, spec.patterns, spec.priority) == (DEFAULT_NAME, ("*",), DEFAULT_PRIORITY)
    assert 0 < spec.priority < 100  # below Elasticsearch's built-in templates, above the default
    assert spec.replicas is None and spec.numbers_as_double


def test_spec_patterns_follow_index_prefixes() -> None:
    assert template_spec(Settings(index_prefix="app-")).patterns == ("app-*",)
    tables: tuple[TableSettings, ...] = (
        TableSettings("a", index_prefix="orders-"),
        TableSettings("b", index_prefix="app-"),
        TableSettings("c", index_prefix="app-x-"),  # covered by app-*
    )
    assert template_spec(Settings(tables=tables, index_prefix="app-")).patterns == (
        "app-*",
        "orders-*",
    )
    # One table without a prefix writes to unprefixed indices: only * covers them.
    tables += (TableSettings("d"),)
    assert template_spec(Settings(tables=tables, index_prefix="app-")).patterns == ("*",)


def test_spec_options_and_validation() -> None:
    spec = template_spec(Settings(), name="mine", replicas=0, numbers_as_double=False, priority=0)
    assert spec == TemplateSpec("mine", ("*",), 0, 0, False)
    with pytest.raises(ConfigError, match="replicas"):
        template_spec(Settings(), replicas=-1)
    with pytest.raises(ConfigError, match="priority"):
        template_spec(Settings(), priority=-1)
    with pytest.raises(ConfigError, match="name"):
        template_spec(Settings(), name=" ")


def test_render_composable_exact_body() -> None:
    spec = TemplateSpec(patterns=("app-*",), replicas=2)
    assert render(spec, COMPOSABLE) == {
        "index_patterns": ["app-*"],
        "priority": DEFAULT_PRIORITY,
        "version": 2,
        "_meta": {"managed_by": "ddb2es"},  # the template's author; indices get no mark
        "template": {
            "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 2}},
            "mappings": {"dynamic_templates": NUMBER_TEMPLATES},
        },
    }


def test_render_legacy_and_options() -> None:
    spec = TemplateSpec(priority=7, numbers_as_double=False)
    assert render(spec, LEGACY) == {
        "index_patterns": ["*"],
        "order": 7,
        "version": 2,
        "settings": {"index": {"number_of_shards": 1}},  # replicas: the cluster's default
    }
    typed = render(TemplateSpec(), LEGACY, mapping_type="_doc")  # Elasticsearch 6.x
    assert typed["mappings"] == {"_doc": {"dynamic_templates": NUMBER_TEMPLATES}}
    with pytest.raises(ConfigError, match="flavour"):
        render(spec, "v3")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("distribution", "version", "expected"),
    [
        ("opensearch", "1.0.0", COMPOSABLE),
        ("opensearch", "3.8.0", COMPOSABLE),
        ("elasticsearch", "6.8.23", LEGACY),
        ("elasticsearch", "7.7.1", LEGACY),
        ("elasticsearch", "7.8.0", COMPOSABLE),
        ("elasticsearch", "7.10.2", COMPOSABLE),
        ("elasticsearch", "8.15.3", COMPOSABLE),
        ("elasticsearch", "9.1.0-SNAPSHOT", COMPOSABLE),
    ],
)
def test_flavour_by_engine(distribution: str, version: str, expected: str) -> None:
    assert flavour(Engine(distribution, version)) == expected


def test_diff_ignores_engine_normalisation() -> None:
    body = render(TemplateSpec(patterns=("app-*",)), COMPOSABLE)
    # What engines give back: numbers as strings, defaults added, a date stamped.
    stored = normalise(
        {
            **body,
            "composed_of": [],
            "created_date_millis": 1,
            "template": {
                "settings": {"index": {"number_of_shards": "1"}},
                "mappings": body["template"]["mappings"],
                "aliases": {},
            },
        }
    )
    assert diff(body, stored) == []
    assert normalise(stored) == stored
    # Flat and nested settings are the same thing; so is a 6.x mapping type.
    legacy = render(TemplateSpec(), LEGACY)
    flat = {**legacy, "settings": {"index.number_of_shards": "1"}}
    flat["mappings"] = {"_doc": legacy["mappings"]}
    assert diff(legacy, flat) == []


def test_diff_lines_name_the_field() -> None:
    body = render(TemplateSpec(patterns=("app-*",)), COMPOSABLE)
    changed: dict[str, Any] = normalise(body)
    changed["template"]["settings"]["index.number_of_shards"] = "2"
    changed["template"]["settings"]["index.number_of_replicas"] = "0"
    changed["template"]["mappings"]["dynamic_templates"][1]["ddb2es_double_as_double"]["mapping"][
        "type"
    ] = "float"
    changed["index_patterns"] = ["*"]
    del changed["_meta"]
    assert diff(body, changed) == [
        '_meta: expected {"managed_by": "ddb2es"}, not set',
        'index_patterns: expected ["app-*"], found ["*"]',
        "template.mappings.dynamic_templates[1].ddb2es_double_as_double.mapping.type: "
        "expected double, found float",
        "template.settings.index.number_of_replicas: found 0, not expected",
        "template.settings.index.number_of_shards: expected 1, found 2",
    ]
    assert diff(body, None) == ["missing"]


# --- against the servers ------------------------------------------------------------------------


class CountingClient:
    """The real client, counting every call that could write a template."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.writes: list[str] = []
        self.indices = _CountingIndices(client.indices, self.writes)

    def perform_request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() not in ("GET", "HEAD"):
            self.writes.append(f"perform_request {method}")
        return self._client.perform_request(method, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _CountingIndices:
    def __init__(self, indices: Any, writes: list[str]) -> None:
        self._indices = indices
        self._writes = writes

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._indices, name)
        if not name.startswith(("put_", "delete_", "create")):
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._writes.append(name)
            return method(*args, **kwargs)

        return counted


@dataclass
class Env:
    stack: Stack
    engine: Engine
    client: CountingClient
    spec: TemplateSpec

    def index(self, name: str) -> str:
        return f"{self.stack.prefix}{name}"


def _delete_templates(es: Any, name: str) -> None:
    for delete in (es.indices.delete_index_template, es.indices.delete_template):
        try:
            delete(name=name)
        except Exception as exc:
            if "NotFound" not in type(exc).__name__:
                raise


@pytest.fixture
def env(any_stack: Stack) -> Iterator[Env]:
    engine = detect_engine(SearchSettings(url=any_stack.es_url))
    # template_spec on the stack's settings: index_prefix is the test's prefix -> `<prefix>*`.
    spec = template_spec(any_stack.settings(), name=f"{any_stack.prefix}tpl")
    assert spec.patterns == (f"{any_stack.prefix}*",)
    names = [spec.name, f"{spec.name}-other", f"{spec.name}-legacy"]
    try:
        yield Env(any_stack, engine, CountingClient(any_stack.es), spec)
    finally:
        for name in names:
            _delete_templates(any_stack.es, name)


def _raw_put(env: Env, kind: str, name: str, body: dict[str, Any]) -> None:
    if kind == COMPOSABLE:
        env.stack.es.indices.put_index_template(name=name, body=body)
    else:
        env.stack.es.indices.put_template(name=name, body=body)


def test_apply_creates_then_unchanged_without_writing(env: Env) -> None:
    first = apply_template(env.client, env.engine, env.spec)
    assert (first.action, first.flavour, first.diff) == ("created", COMPOSABLE, ["missing"])
    assert first.body == render(env.spec, COMPOSABLE)
    assert first.request == f"PUT /_index_template/{env.spec.name}"
    assert env.client.writes == ["put_index_template"]
    assert first.warnings == []  # a prefixed pattern overlaps nothing here

    env.client.writes.clear()
    again = apply_template(env.client, env.engine, env.spec)
    assert (again.action, again.diff) == ("unchanged", [])
    assert env.client.writes == []  # identical: not even a PUT

    more = apply_template(env.client, env.engine, replace(env.spec, replicas=0))
    assert more.action == "updated"
    assert more.diff == ["template.settings.index.number_of_replicas: expected 0, not set"]
    assert env.client.writes == ["put_index_template"]
    stored = installed(env.stack.es, env.spec, COMPOSABLE)
    assert stored is not None
    assert stored["template"]["settings"]["index.number_of_replicas"] == "0"


def test_check_matches_missing_and_differs(env: Env) -> None:
    missing = check_template(env.client, env.engine, env.spec)
    assert (missing.action, missing.ok, missing.diff) == ("missing", False, ["missing"])

    apply_template(env.client, env.engine, env.spec)
    env.client.writes.clear()
    ok = check_template(env.client, env.engine, env.spec)
    assert (ok.action, ok.ok, ok.diff) == ("matches", True, [])
    assert env.client.writes == []  # check never writes

    # Someone changes it by hand: two shards, and the number mapping dropped.
    by_hand = render(replace(env.spec, numbers_as_double=False), COMPOSABLE)
    by_hand["template"]["settings"]["index"]["number_of_shards"] = 2
    _raw_put(env, COMPOSABLE, env.spec.name, by_hand)
    differs = check_template(env.client, env.engine, env.spec)
    assert (differs.action, differs.ok) == ("differs", False)
    assert "template.settings.index.number_of_shards: expected 1, found 2" in differs.diff
    assert any(line.startswith("template.mappings") for line in differs.diff)
    assert differs.as_dict()["diff"] == differs.diff


def test_dry_run_writes_nothing(env: Env) -> None:
    plan = apply_template(env.client, env.engine, env.spec, dry_run=True)
    assert (plan.action, plan.diff) == ("would create", ["missing"])
    assert plan.body == render(env.spec, COMPOSABLE)
    assert env.client.writes == []
    assert installed(env.stack.es, env.spec, COMPOSABLE) is None

    apply_template(env.client, env.engine, env.spec)
    env.client.writes.clear()
    changed = replace(env.spec, replicas=0)
    plan = apply_template(env.client, env.engine, changed, dry_run=True)
    assert plan.action == "would update"
    assert plan.diff == ["template.settings.index.number_of_replicas: expected 0, not set"]
    assert env.client.writes == []
    assert check_template(env.client, env.engine, env.spec).action == "matches"


def test_new_index_gets_one_shard_numbers_as_double_and_no_mark(env: Env) -> None:
    """No ownership mark: the template matches other applications' indices too (issue 10)."""
    apply_template(env.client, env.engine, env.spec)
    index = env.index("orders")
    es = env.stack.es
    # The first number is an integer: without the template the field would become `long`.
    es.index(index=index, id="1", body={"price": 19, "items": [1, 2]}, refresh=True)
    es.index(index=index, id="2", body={"price": 19.99, "items": [3, 4]}, refresh=True)
    mapping = _body(es.indices.get_mapping(index=index))[index]["mappings"]
    assert mapping["properties"]["price"] == {"type": "double"}
    assert mapping["properties"]["items"] == {"type": "double"}
    assert "_meta" not in mapping
    settings = _body(es.indices.get_settings(index=index))[index]["settings"]["index"]
    assert settings["number_of_shards"] == "1"


def test_legacy_flavour(env: Env) -> None:
    spec = replace(env.spec, name=f"{env.spec.name}-legacy")
    created = apply_template(env.client, env.engine, spec, kind=LEGACY)
    assert (created.action, created.flavour) == ("created", LEGACY)
    assert created.request == f"PUT /_template/{spec.name}"
    assert env.client.writes == ["put_template"]
    raw = _body(env.stack.es.indices.get_template(name=spec.name))[spec.name]
    assert raw["order"] == spec.priority and raw["index_patterns"] == list(spec.patterns)
    assert check_template(env.client, env.engine, spec, kind=LEGACY).action == "matches"
    # The legacy template is not a composable one: that flavour has nothing by this name.
    assert check_template(env.client, env.engine, spec).action == "missing"

    env.client.writes.clear()
    assert apply_template(env.client, env.engine, spec, kind=LEGACY).action == "unchanged"
    assert env.client.writes == []

    by_hand = render(spec, LEGACY)
    by_hand["settings"] = {"index": {"number_of_shards": 3}}
    _raw_put(env, LEGACY, spec.name, by_hand)
    differs = check_template(env.client, env.engine, spec, kind=LEGACY)
    assert differs.action == "differs"
    assert differs.diff == ["settings.index.number_of_shards: expected 1, found 3"]

    apply_template(env.client, env.engine, spec, kind=LEGACY)
    index = env.index("legacy")
    env.stack.es.index(index=index, id="1", body={"n": 1}, refresh=True)
    mapping = _body(env.stack.es.indices.get_mapping(index=index))[index]["mappings"]
    assert "_meta" not in mapping
    assert mapping["properties"]["n"] == {"type": "double"}


def test_warnings_name_overlapping_templates(env: Env) -> None:
    # Set up before ours: Elasticsearch refuses a new legacy template that overlaps a
    # composable one, but keeps an existing one (which ours then hides).
    legacy_name = f"{env.spec.name}-legacy"
    _raw_put(env, LEGACY, legacy_name, {"index_patterns": [env.index("logs-*")], "order": 0})
    other = f"{env.spec.name}-other"
    _raw_put(
        env,
        COMPOSABLE,
        other,
        {"index_patterns": [env.index("orders-*")], "priority": env.spec.priority - 1},
    )
    result = apply_template(env.client, env.engine, env.spec)
    assert result.action == "created"
    joined = "\n".join(result.warnings)
    lower = env.spec.priority - 1
    assert f"template {other} ({env.index('orders-*')}, priority {lower}) no longer" in joined
    assert f"legacy template {legacy_name}" in joined and "is ignored" in joined
    assert check_template(env.client, env.engine, env.spec).warnings == result.warnings

    # A higher-priority template takes indices away from ours: said too.
    _raw_put(
        env,
        COMPOSABLE,
        other,
        {"index_patterns": [env.index("orders-*")], "priority": env.spec.priority + 1},
    )
    notes = check_template(env.client, env.engine, env.spec).warnings
    assert any(f"template {other}" in n and "do not get one shard" in n for n in notes)


def test_same_priority_overlap_is_a_readable_error(env: Env) -> None:
    other = f"{env.spec.name}-other"
    _raw_put(
        env,
        COMPOSABLE,
        other,
        {"index_patterns": [env.index("a-*")], "priority": env.spec.priority},
    )
    with pytest.raises(TemplateError) as raised:
        apply_template(env.client, env.engine, env.spec)
    message = str(raised.value)
    assert message.startswith(f"PUT /_index_template/{env.spec.name} refused (HTTP 400)")
    assert "same priority" in message
    assert installed(env.stack.es, env.spec, COMPOSABLE) is None


def _body(response: Any) -> dict[str, Any]:
    body = getattr(response, "body", response)
    assert isinstance(body, dict)
    return body


# --- through the CLI ----------------------------------------------------------------------------


def _cli(stack: Stack, config: Any, *args: str) -> Any:
    from click.testing import CliRunner

    from ddb2es_cli.cli import cli

    return CliRunner().invoke(cli, ["--config", str(config), *args], env=stack.cli_env())


def test_cli_apply_check_show_and_exit_codes(any_stack: Stack, tmp_path: Any) -> None:
    """What CI runs: `check` exits 0 when installed as configured, 3 with a diff otherwise."""
    import json

    from ddb2es_cli.errors import ExitStatus

    config = any_stack.config_file(tmp_path)
    config.write_text(config.read_text() + "replicas = 0\n")  # appended to [template]
    name = any_stack.template_name
    try:
        missing = _cli(any_stack, config, "template", "check")
        assert missing.exit_code == ExitStatus.DIFFERS, missing.output
        assert f"/{name}: missing" in missing.stdout

        dry = _cli(any_stack, config, "template", "apply", "--dry-run")
        assert dry.exit_code == 0 and "would create" in dry.stdout
        assert _cli(any_stack, config, "template", "check").exit_code == ExitStatus.DIFFERS

        created = _cli(any_stack, config, "template", "apply")
        assert created.exit_code == 0 and f"/{name}: created" in created.stdout
        again = _cli(any_stack, config, "--json", "template", "apply")
        assert json.loads(again.stdout)["action"] == "unchanged"
        ok = _cli(any_stack, config, "--json", "template", "check")
        assert ok.exit_code == 0, ok.output
        assert (
            json.loads(ok.stdout)["body"]["template"]["settings"]["index"]["number_of_replicas"]
            == 0
        )

        # The flag beats the file: asking for one replica finds the installed template differs.
        differs = _cli(any_stack, config, "template", "check", "--replicas", "1")
        assert differs.exit_code == ExitStatus.DIFFERS
        assert "number_of_replicas: expected 1, found 0" in differs.stdout

        shown = _cli(any_stack, config, "template", "show")
        assert json.loads(shown.stdout)["index_patterns"] == [f"{any_stack.prefix}*"]
    finally:
        _delete_templates(any_stack.es, name)
