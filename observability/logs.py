"""Logging, configured once per process: JSON lines in production, readable text on a terminal.

``configure_logging(level, fmt)`` installs one handler on the root logger (stderr); uvicorn is
started with ``log_config=None`` so its records go through it too. Every record carries the
request id of the request it was logged in (``request_id``, set by the gateway's telemetry
middleware) and, when tracing is on, its trace id. Third-party loader chatter (FAISS's loader,
sentence-transformers, httpx's per-request lines) is kept below the default level.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from contextvars import ContextVar
from typing import Any, TextIO

import orjson

request_id: ContextVar[str | None] = ContextVar("tailor_request_id", default=None)

# Loggers that chatter at INFO about loading libraries or every outgoing request.
NOISY = {
    "faiss": logging.WARNING,
    "faiss.loader": logging.WARNING,
    "sentence_transformers": logging.WARNING,
    "transformers": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "py4j": logging.WARNING,
    "numexpr": logging.WARNING,
    "uvicorn.access": logging.WARNING,
}
FORMATS = ("auto", "json", "text")
# The attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
_HANDLER_MARK = "_tailor_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, trace_id, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            doc["request_id"] = rid
        trace_id = _trace_id()
        if trace_id:
            doc["trace_id"] = trace_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message [request id]`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None) or request_id.get()
        return f"{line} [{rid}]" if rid and record.name != "tailor.access" else line


def _trace_id() -> str | None:
    from observability.tracing import current_trace_id

    return current_trace_id()


def resolve_format(fmt: str, *, production: bool, stream: TextIO) -> str:
    """``auto``: JSON in production or when ``stream`` is not a terminal, text otherwise."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    return "json" if production or not stream.isatty() else "text"


def configure_logging(
    level: str | int = "info",
    fmt: str = "auto",
    *,
    production: bool = False,
    stream: TextIO | None = None,
) -> str:
    """Install the one root handler (replacing a previous one of ours); returns the format used."""
    out = stream or sys.stderr
    chosen = resolve_format(fmt, production=production, stream=out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name, noisy_level in NOISY.items():
        logging.getLogger(name).setLevel(noisy_level)
    logging.captureWarnings(True)
    return chosen
