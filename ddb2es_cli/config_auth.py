"""The search side's credentials: user and password taken out of the URL, and which auth mode
the flags, the environment and the file ask for (flags and environment first)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ddb2es_cli.config_checks import url_problem
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.redaction import redact_url

if TYPE_CHECKING:
    from ddb2es_cli.config import SearchSettings

AUTH_MODES = ("none", "basic", "api-key", "aws-sigv4")


def credentials_from_url(settings: SearchSettings) -> SearchSettings:
    """`https://user:pw@host` works like --es-username/--es-password, and the URL keeps neither.

    The userinfo is everything between `scheme://` and the last `@`, so a password holding
    `/`, `?`, `#` or `@` (unencoded) still works, and is never part of an error message.
    """
    _scheme, sep, rest = settings.url.partition("://")
    userinfo = rest.rpartition("@")[0] if sep else ""
    url = redact_url(settings.url)
    problem = url_problem(url)
    if problem:
        raise ConfigError(f"--es-url {problem}: {url}")
    if not userinfo:
        return settings
    user, _, password = userinfo.partition(":")
    return replace(
        settings,
        url=url,
        username=settings.username or (unquote(user) if user else None),
        password=settings.password or (unquote(password) if password else None),
    )


def auth_mode(
    file_auth: Any, sigv4_flag: bool | None, settings: SearchSettings, given: Mapping[str, Any]
) -> str:
    """Flags and environment first (SigV4 flag, then credentials), then the file's `auth`,
    then whatever credentials the file gave."""
    if sigv4_flag is True:
        return "aws-sigv4"
    if given.get("es_api_key"):
        return "api-key"
    if given.get("es_username") or given.get("es_password"):
        return "basic"
    if file_auth is not None and not (sigv4_flag is False and file_auth == "aws-sigv4"):
        if file_auth not in AUTH_MODES:
            raise ConfigError(f"auth must be one of {', '.join(AUTH_MODES)}, not {file_auth!r}")
        return str(file_auth)
    if settings.api_key:
        return "api-key"
    if settings.username or settings.password:
        return "basic"
    return "none"
