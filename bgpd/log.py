"""Logging: structlog key-value events, JSON when not on a terminal, console otherwise.

Under systemd, stderr is a stream to the journal (``JOURNAL_STREAM`` names it): each line
then starts with its syslog priority, ``<3>`` for an error, which journald takes off and
keeps as the entry's ``PRIORITY`` — so ``journalctl -u bgpd -p err`` shows bgpd's errors
(without it every line is priority 6, info, whatever its level).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}


class _Stderr:
    """``sys.stderr`` as it is at each write (a redirect, a test's capture), not as it was
    when logging was set up."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# syslog priorities (RFC 5424) of structlog's method names
PRIORITIES = {"debug": 7, "info": 6, "msg": 6, "warning": 4, "warn": 4, "error": 3,
              "exception": 3, "critical": 2, "fatal": 2}


def on_journal() -> bool:
    """stderr is the journal stream systemd gave this process (``JOURNAL_STREAM`` is the
    device and inode of that stream; a child whose stderr was redirected is not on it)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def _priority(_: Any, method: str, line: str) -> str:
    return f"<{PRIORITIES.get(method, 6)}>{line}"


def configure(level: str = "info", *, json: bool | None = None, cache: bool = True) -> None:
    """Set up structlog for the process; ``json`` None means "JSON unless stderr is a tty";
    ``cache``: each logger keeps this configuration from its first use on (off for a
    command that sets it for a while)."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
            *([_priority] if on_journal() else []),  # type: ignore[list-item]
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level.lower()]),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=cache,
    )
