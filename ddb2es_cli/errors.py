"""Typed exceptions for the core and the one exit-code table used at the edge (the cli package)."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes; documented in the README."""

    OK = 0
    ERROR = 1
    USAGE = 2
    DIFFERS = 3  # drift found, or the installed template differs
    PARTIAL = 4  # finished, but some documents failed (see the failures file)
    INTERRUPTED = 130


class Ddb2esError(Exception):
    """Base of every error the core raises on purpose; the message is one line for operators."""

    exit_status = ExitStatus.ERROR


class ConfigError(Ddb2esError):
    """Bad configuration or bad input from the operator."""

    exit_status = ExitStatus.USAGE


class LocalStackError(Ddb2esError):
    """The embedded local servers could not be fetched, started or stopped."""


class ConnectionFailed(Ddb2esError):
    """An endpoint could not be reached or refused our credentials."""


class Cancelled(Ddb2esError):
    """The operator answered "no" to a confirmation: nothing was changed (exit 1)."""


class DriftError(Ddb2esError):
    """A drift check could not be completed (the search cluster refused a request, ...)."""
