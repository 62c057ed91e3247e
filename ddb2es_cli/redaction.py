"""Masking secrets in whatever we print: our messages, and log lines from any library.

botocore's debug log shows `X-Amz-Security-Token` and `Authorization` headers on every request,
urllib3 and the search clients may quote URLs and headers: a formatter on our one log handler
masks them all, and every configured password, API key and AWS secret, before a line is written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"

# Header or query parameter name, its separator (`': b'`, `:`, `=`), then the value up to the
# closing quote, the end of the line or the next query parameter.
_SENSITIVE = re.compile(
    r"(?i)\b(authorization|x-amz-security-token|x-amz-credential|x-amz-signature|"
    r"aws_secret_access_key|aws_session_token)(['\"]?\s*[:=]\s*b?['\"]?)([^'\"\n&]+)"
)

_registered: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Secrets known to this process (configured passwords, keys, AWS credentials)."""
    for value in values:
        if value:
            _registered.add(value)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Mask sensitive headers, and each secret where it stands as a whole value.

    Whole values only: masking a short secret inside a longer word (`ab` in `about`) would show
    both the secret and where it occurs.
    """
    values = {s for s in (*secrets, *_registered) if s}
    for secret in sorted(values, key=len, reverse=True):
        pattern = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
        text = re.sub(pattern, MASK, text)
    return _SENSITIVE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks: covers the message, its arguments and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def redact_url(url: str) -> str:
    """The URL without any user:password part, whatever the URL looks like.

    Not `urlsplit`: a password holding `/`, `?` or `#` ends the netloc early, and the rest of the
    password would then be shown as a path. Everything between `scheme://` and the last `@` goes.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"
