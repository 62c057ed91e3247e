"""Settings from flags, environment, `ddb2es.toml` and defaults (in that order of precedence).

click reads flags and `DDB2ES_*` variables (it gives None when neither is set); this module lays
what it found over the file, and the file over the defaults.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# KeyCollision and key_collisions moved to collisions.py; importable from here as before.
from ddb2es_cli.collisions import KeyCollision as KeyCollision
from ddb2es_cli.collisions import key_collisions as key_collisions
from ddb2es_cli.config_auth import AUTH_MODES, auth_mode, credentials_from_url
from ddb2es_cli.config_checks import (
    Check,
    check_file,
    check_table_name,
    index_prefix_problem,
    table_name_problem,
    url_problem,
    validate_overrides,
)

# The value checks under the short names SCHEMA uses (config_checks.py has them all).
from ddb2es_cli.config_checks import count as _count
from ddb2es_cli.config_checks import existing_file as _existing_file
from ddb2es_cli.config_checks import flag as _flag
from ddb2es_cli.config_checks import milliseconds as _ms
from ddb2es_cli.config_checks import non_empty as _name
from ddb2es_cli.config_checks import one_of as _one_of
from ddb2es_cli.config_checks import text as _string
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.redaction import redact as redact
from ddb2es_cli.redaction import redact_url as redact_url
from ddb2es_cli.redaction import register_secret
from ddb2es_cli.transform import (
    DEFAULT_OVERLAP_MS,
    DEFAULT_REPAIR_MARGIN_MS,
    LOCAL_REPAIR_MARGIN_MS,
    TableShape,
)

log = logging.getLogger("ddb2es.config")

MIN_OVERLAP_MS = 1_000  # stream times are rounded down to the second on AWS
LOCAL_MIN_OVERLAP_MS = 60_000  # ... and to the minute on DynamoDB Local

DEFAULT_CONFIG_FILE = "ddb2es.toml"
# Items per Scan page for reindex and reload. Memory is bounded by pages (at most segments + 1
# exist at once), and a parsed page costs far more than its wire size: a full 1 MB page of rich
# items (~70 attribute values each) is some 17 MB of Python objects, so 8 threads reading 1 MB
# pages ahead held ~400 MB. Each Scan request also costs ~2-3 ms of botocore's CPU, so pages of
# 500 read by 2 threads per core (segments.default_load_segments) keep the items in flight of 250
# read by 4 per core at a fraction of the requests (docs/benchmarks.md, issue 14).
DEFAULT_PAGE_LIMIT = 500
AWS_SERVICES = ("es", "aoss")


@dataclass(frozen=True)
class DynamoSettings:
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None

    @property
    def is_local(self) -> bool:
        """An endpoint that is not AWS: DynamoDB Local (loopback, a container name, ...), whose
        stream times are cut to the minute. The safe side: anything but an AWS host counts."""
        if not self.endpoint:
            return False
        host = (urlsplit(self.endpoint).hostname or "").lower().rstrip(".")
        return not (host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn"))


@dataclass(frozen=True)
class SearchSettings:
    url: str = "http://localhost:9200"
    auth: str = "none"
    username: str | None = None
    # Secrets never reach a repr, a log line or an error message.
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    aws_service: str = "es"
    ca_certs: str | None = None
    verify_certs: bool = True
    # SigV4 signs with the same AWS session as DynamoDB (`--profile`, `[dynamodb] profile`).
    aws_profile: str | None = None

    def __repr__(self) -> str:
        # The URL may carry user:password; the generated repr would show it.
        return (
            f"SearchSettings(url={self.safe_url!r}, auth={self.auth!r}, "
            f"username={self.username!r}, aws_service={self.aws_service!r}, "
            f"ca_certs={self.ca_certs!r}, verify_certs={self.verify_certs!r})"
        )

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.api_key) if s]

    def describe_auth(self) -> str:
        if self.auth == "basic":
            return f"basic (user {self.username!r})"
        if self.auth == "aws-sigv4":
            return f"aws-sigv4 (service {self.aws_service!r})"
        return self.auth


@dataclass(frozen=True)
class TableSettings:
    name: str
    type_attribute: str = "TYPE"
    default_type: str = "default"
    index_prefix: str = ""

    def shape(self, hash_key: str, range_key: str | None) -> TableShape:
        return TableShape(
            hash_key=hash_key,
            range_key=range_key,
            type_attribute=self.type_attribute,
            default_type=self.default_type,
            index_prefix=self.index_prefix,
        )


@dataclass(frozen=True)
class TemplateSettings:
    """The `[template]` section: what `template apply|check`, `reload` and `doctor` all expect,
    so a weekend reload never undoes what CI installed."""

    name: str | None = None
    replicas: int | None = None
    priority: int | None = None
    numbers_as_double: bool = True


@dataclass(frozen=True)
class Settings:
    dynamodb: DynamoSettings = DynamoSettings()
    search: SearchSettings = SearchSettings()
    tables: tuple[TableSettings, ...] = ()
    type_attribute: str = "TYPE"
    default_type: str = "default"
    index_prefix: str = ""
    version_overlap_ms: int = DEFAULT_OVERLAP_MS
    # Margin of repair versions (consistent reads); None: 60 s on a local endpoint, else 5 s.
    repair_margin_ms: int | None = None
    template: TemplateSettings = TemplateSettings()
    source: str | None = None  # the config file read, if any
    # Whose indices these are on a shared cluster (see ownership.py); None: from index_prefix.
    deployment: str | None = None
    # [state] table: the DynamoDB table that coordinates runs of many workers (None: files).
    state_table: str | None = None
    state_lease_seconds: float | None = None
    s3_endpoint: str | None = None  # [s3] endpoint: S3-compatible stores and tests (exports)

    @property
    def deployment_name(self) -> str:
        # Imported here: ownership (and what it imports) costs about 15 ms that loading the
        # settings, and a command's `--help`, need not pay (issue 14).
        from ddb2es_cli.ownership import deployment_name

        return deployment_name(self.deployment, self.index_prefix)

    @property
    def repair_margin(self) -> int:
        """Milliseconds a repair version stays below its consistent read (docs/spec.md)."""
        if self.repair_margin_ms is not None:
            return self.repair_margin_ms
        return LOCAL_REPAIR_MARGIN_MS if self.dynamodb.is_local else DEFAULT_REPAIR_MARGIN_MS

    def table(self, name: str) -> TableSettings:
        """The configured table, or one with the global defaults for a table named on the CLI."""
        for table in self.tables:
            if table.name == name:
                return table
        return TableSettings(name, self.type_attribute, self.default_type, self.index_prefix)

    def select_tables(self, names: tuple[str, ...], all_tables: bool) -> list[TableSettings]:
        """TABLE... or --all, never both, never neither."""
        if all_tables and names:
            raise ConfigError("give table names or --all, not both")
        if all_tables:
            if not self.tables:
                raise ConfigError("--all needs [[tables]] in the config file; none are configured")
            return list(self.tables)
        if not names:
            raise ConfigError("name at least one table, or use --all")
        return [self.table(check_table_name(n)) for n in names]


def read_config_file(path: Path | None) -> tuple[dict[str, Any], str | None]:
    """The parsed TOML file: the explicit one (must exist) or ./ddb2es.toml when present."""
    if path is None:
        default = Path(DEFAULT_CONFIG_FILE)
        if not default.is_file():
            return {}, None
        path = default
    if sys.version_info >= (3, 11):  # imported here: a run without a file never parses TOML
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle), str(path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


# --- validation ---------------------------------------------------------------------------
# Every section and key the file may hold, each with its check: a check returns what is wrong
# with a value (None: fine). A new key is one line here. Unknown sections and keys are errors
# with a "did you mean", so a typo never silently falls back to a default.

TABLE_KEYS: dict[str, Check] = {
    "name": lambda v: table_name_problem(v) if isinstance(v, str) else "must be a string",
    "type_attribute": _name,
    "default_type": _string,
    "index_prefix": index_prefix_problem,
}
SCHEMA: dict[str, dict[str, Check]] = {
    "dynamodb": {"endpoint": url_problem, "region": _string, "profile": _string},
    "search": {
        "url": url_problem,
        "auth": _one_of(*AUTH_MODES),
        "username": _string,
        "password": _string,
        "api_key": _string,
        "aws_service": _one_of(*AWS_SERVICES),
        "ca_certs": _existing_file,
        "verify_certs": _flag,
    },
    "defaults": {
        "type_attribute": _name,
        "default_type": _string,
        "index_prefix": index_prefix_problem,
        "version_overlap_ms": _ms,
        "repair_margin_ms": _ms,
        "deployment": _name,
    },
    "template": {"name": _name, "replicas": _count, "priority": _count, "numbers_as_double": _flag},
    "tables": TABLE_KEYS,  # an array of tables: [[tables]]
    "state": {"table": table_name_problem, "lease_seconds": _count},
    "s3": {"endpoint": url_problem},
}
ARRAY_SECTIONS = {"tables"}
SECRET_KEYS = {"password", "api_key"}  # never quoted in an error


def validate_file(data: Mapping[str, Any], source: str | None) -> None:
    """Every section, key and value of the file, against SCHEMA; the first problem is raised."""
    check_file(data, source, SCHEMA, ARRAY_SECTIONS, SECRET_KEYS)


def load_settings(config_path: Path | None, overrides: Mapping[str, Any]) -> Settings:
    """Settings from the file, with `overrides` (flags and environment) laid on top.

    Override keys: dynamodb_endpoint, region, profile, es_url, es_username, es_password,
    es_api_key, es_aws_sigv4, es_aws_service, es_ca_certs, es_verify_certs. None means "not given".
    """
    data, source = read_config_file(config_path)
    validate_file(data, source)
    given = {k: v for k, v in overrides.items() if v is not None}
    validate_overrides(given)
    dynamo = _section(data, "dynamodb")
    search = _section(data, "search")
    defaults = _section(data, "defaults")

    dynamodb = DynamoSettings(
        endpoint=given.get("dynamodb_endpoint", dynamo.get("endpoint")) or None,
        region=given.get("region", dynamo.get("region")) or None,
        profile=given.get("profile", dynamo.get("profile")) or None,
    )
    search_settings = _search_settings(search, given, dynamo.get("profile"))
    global_defaults = {
        "type_attribute": str(defaults.get("type_attribute", "TYPE")),
        "default_type": str(defaults.get("default_type", "default")),
        "index_prefix": str(defaults.get("index_prefix", "")),
    }
    tables = tuple(_table(entry, global_defaults) for entry in data.get("tables", []))
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise ConfigError(f"config file {source} names a table twice")
    return Settings(
        dynamodb=dynamodb,
        search=search_settings,
        tables=tables,
        version_overlap_ms=_version_overlap_ms(defaults, dynamodb),
        repair_margin_ms=(
            _non_negative_int(defaults, "repair_margin_ms", 0)
            if "repair_margin_ms" in defaults
            else None
        ),
        template=_template_settings(_section(data, "template")),
        source=source,
        deployment=_deployment(defaults),
        state_table=_section(data, "state").get("table"),
        state_lease_seconds=_section(data, "state").get("lease_seconds"),
        s3_endpoint=_section(data, "s3").get("endpoint") or None,
        **global_defaults,
    )


def _version_overlap_ms(defaults: Mapping[str, Any], dynamodb: DynamoSettings) -> int:
    """Scan versions must rank below any stream record newer than the read (docs/spec.md)."""
    value = _non_negative_int(defaults, "version_overlap_ms", DEFAULT_OVERLAP_MS)
    if value < MIN_OVERLAP_MS:
        raise ConfigError(
            f"[defaults] version_overlap_ms = {value} is below {MIN_OVERLAP_MS}: stream times are "
            "rounded down to the second, so older snapshot writes could overwrite newer changes"
        )
    if value < LOCAL_MIN_OVERLAP_MS and dynamodb.is_local:
        log.warning(
            "[defaults] version_overlap_ms = %d is below %d: DynamoDB Local cuts stream times "
            "to the minute, so a snapshot write can win over a newer stream record",
            value,
            LOCAL_MIN_OVERLAP_MS,
        )
    return value


def _deployment(defaults: Mapping[str, Any]) -> str | None:
    value = defaults.get("deployment")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("[defaults] deployment must be a non-empty string")
    return value.strip()


def _non_negative_int(section: Mapping[str, Any], name: str, default: int) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"[defaults] {name} must be a whole number of milliseconds >= 0")
    return value


def _template_settings(section: Mapping[str, Any]) -> TemplateSettings:
    unknown = set(section) - {"name", "replicas", "priority", "numbers_as_double"}
    if unknown:
        raise ConfigError(f"[template]: unknown keys {sorted(unknown)}")
    name = section.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError("[template] name must be a non-empty string")
    numbers_as_double = section.get("numbers_as_double", True)
    if not isinstance(numbers_as_double, bool):
        raise ConfigError("[template] numbers_as_double must be true or false")
    return TemplateSettings(
        name=name,
        replicas=_optional_count(section, "replicas"),
        priority=_optional_count(section, "priority"),
        numbers_as_double=numbers_as_double,
    )


def _optional_count(section: Mapping[str, Any], name: str) -> int | None:
    value = section.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(f"[template] {name} must be a whole number >= 0")
    return value


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] in the config file must be a table")
    return value


def _table(entry: Any, defaults: Mapping[str, str]) -> TableSettings:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ConfigError("every [[tables]] entry needs a name")
    unknown = set(entry) - {"name", "type_attribute", "default_type", "index_prefix"}
    if unknown:
        raise ConfigError(f"[[tables]] {entry['name']!r}: unknown keys {sorted(unknown)}")
    return TableSettings(
        name=str(entry["name"]), **{k: str(entry.get(k, v)) for k, v in defaults.items()}
    )


def _search_settings(
    search: Mapping[str, Any], given: Mapping[str, Any], dynamo_profile: str | None = None
) -> SearchSettings:
    settings = SearchSettings(
        url=str(given.get("es_url", search.get("url", SearchSettings.url))),
        username=given.get("es_username", search.get("username")),
        password=given.get("es_password", search.get("password")),
        api_key=given.get("es_api_key", search.get("api_key")),
        aws_service=str(given.get("es_aws_service", search.get("aws_service", "es"))),
        ca_certs=given.get("es_ca_certs", search.get("ca_certs")),
        verify_certs=given.get("es_verify_certs", search.get("verify_certs", True)),
        aws_profile=given.get("profile", dynamo_profile) or None,
    )
    settings = credentials_from_url(settings)
    auth = auth_mode(search.get("auth"), given.get("es_aws_sigv4"), settings, given)
    settings = replace(settings, auth=auth)
    if settings.aws_service not in AWS_SERVICES:
        raise ConfigError(f"aws_service must be one of {', '.join(AWS_SERVICES)}")
    if auth == "basic" and not (settings.username and settings.password):
        raise ConfigError("basic auth needs --es-username and --es-password")
    if auth == "api-key" and not settings.api_key:
        raise ConfigError("api-key auth needs --es-api-key (or DDB2ES_ES_API_KEY)")
    register_secret(settings.password, settings.api_key)
    return settings
