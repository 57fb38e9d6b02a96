"""structlog set-up: JSON in production, a readable console on a terminal, no key material.

`configure_logging` routes both structlog and the standard library's `logging`
(the kubernetes client, urllib3) through one chain ending in
`redact_private_keys`, so a PEM private key never reaches the output, whoever
logs it. `reconcile_context` binds `controller`, `namespace`, `name` and
`reconcile_id` to every line logged by the current thread until it exits.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import random
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED_PRIVATE_KEY = "[REDACTED private key]"
"""What replaces private key material in log output."""

THIRD_PARTY_LOGGERS = ("kubernetes", "urllib3")
"""Chatty libraries kept at WARNING unless verbosity is 5 or more."""

# A PEM private key block (PKCS#1, PKCS#8, EC, ENCRYPTED, OPENSSH ...), also when
# truncated (no END line) or with its newlines escaped by repr().
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----\n?|\Z)",
    re.DOTALL,
)
# base64 of "-----BEGIN" starts with this: how a PEM key looks inside a Secret's `data`.
_BASE64_PEM = re.compile(r"LS0tLS1CRUdJTi[A-Za-z0-9+/]*={0,2}")
_PRIVATE_KEY_MARKER = "PRIVATE KEY-----"


def _redact_base64(match: re.Match[str]) -> str:
    encoded = match.group(0)
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        return encoded
    return REDACTED_PRIVATE_KEY if _PRIVATE_KEY_MARKER.encode() in decoded else encoded


def redact_text(text: str) -> str:
    """`text` with every PEM private key block (plain or base64-encoded) replaced."""
    if "PRIVATE KEY" in text:
        text = _PEM_PRIVATE_KEY.sub(REDACTED_PRIVATE_KEY, text)
    if "LS0tLS1CRUdJTi" in text:
        text = _BASE64_PEM.sub(_redact_base64, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).decode("latin-1")
        return REDACTED_PRIVATE_KEY if redact_text(text) != text else value
    if isinstance(value, Mapping):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else is rendered through str()/repr(): check what that would print.
    rendered = repr(value)
    redacted = redact_text(rendered)
    return redacted if redacted != rendered else value


def redact_private_keys(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace private key material in every value of the event.

    Place it after `format_exc_info` so rendered tracebacks are covered too.
    """
    return {key: _redact_value(value) for key, value in event_dict.items()}


def level_for(verbosity: int = 0, level: str | int | None = None) -> int:
    """The stdlib level: `level` when given (name or number), else INFO at `--v 0`, DEBUG above."""
    if level is None:
        return logging.DEBUG if verbosity > 0 else logging.INFO
    if isinstance(level, int):
        return level
    resolved = logging.getLevelNamesMapping().get(level.upper())
    if resolved is None:
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    return resolved


def configure_logging(
    verbosity: int = 0,
    *,
    level: str | int | None = None,
    json: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and stdlib logging for the process (call once, early; idempotent).

    `json=None` chooses JSON when `stream` (default stdout) is not a terminal.
    """
    out = stream if stream is not None else sys.stdout
    use_json = not out.isatty() if json is None else json
    threshold = level_for(verbosity, level)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_private_keys,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 5 else logging.WARNING)
    # The threshold is the root's: a level left on kcp's own logger by an earlier set-up
    # (the benchmarks quiet it) would otherwise keep hiding lines this call asks for.
    logging.getLogger("kcp").setLevel(logging.NOTSET)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """`--v N` (klog-style verbosity), `--log-level`, `--log-format auto|json|console`."""
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--v", dest="v", type=int, default=0, help="verbosity: 0 info, 1+ debug (default: 0)"
    )
    group.add_argument(
        "--log-level",
        dest="log_level",
        default=None,
        help="debug, info, warning or error; overrides --v (default: from --v)",
    )
    group.add_argument(
        "--log-format",
        dest="log_format",
        choices=("auto", "json", "console"),
        default="auto",
        help="auto: JSON unless stdout is a terminal (default: auto)",
    )


def configure_logging_from_args(args: argparse.Namespace) -> None:
    """`configure_logging` with the flags `add_logging_arguments` added."""
    fmt = getattr(args, "log_format", "auto")
    configure_logging(
        getattr(args, "v", 0),
        level=getattr(args, "log_level", None),
        json=None if fmt == "auto" else fmt == "json",
    )


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A structlog logger named `name` with `initial` values bound."""
    return structlog.stdlib.get_logger(name, **initial)


def new_reconcile_id() -> str:
    """A fresh id for one reconcile, to find all its lines (a version-4 UUID, as
    controller-runtime's). It only has to be unique, not secret: drawn from the `random`
    module, not `uuid4`'s system call, which with many workers makes each reconcile queue
    for the interpreter lock once more."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


@contextmanager
def reconcile_context(
    controller: str, namespace: str, name: str, reconcile_id: str | None = None
) -> Iterator[str]:
    """Bind the reconcile's context to every log line of this thread; yields the reconcile id."""
    rid = reconcile_id or new_reconcile_id()
    tokens = bind_contextvars(
        controller=controller, namespace=namespace, name=name, reconcile_id=rid
    )
    try:
        yield rid
    finally:
        reset_contextvars(**tokens)
