"""Warnings said once per process: credentials over plain http to a remote host, TLS that
checks nothing."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from ddb2es_cli.config import SearchSettings, redact_url

log = logging.getLogger("ddb2es.clients")


_warned: set[str] = set()
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host in _LOOPBACK or host.startswith("127.") or host.endswith(".localhost")


def warn_plain_http(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        _warn_once(
            f"{what} go over plain http:// to {redact_url(url)}: anyone on the path can read them"
        )


def warn_transport(settings: SearchSettings) -> None:
    """Once per process, on stderr: credentials in clear text, or TLS that checks nothing."""
    if settings.auth != "none":
        warn_plain_http(settings.url, f"search credentials ({settings.auth})")
    if settings.url.startswith("https://") and not settings.verify_certs:
        _warn_once(
            f"TLS certificate verification is off for {settings.safe_url}: "
            "the server is not authenticated"
        )
