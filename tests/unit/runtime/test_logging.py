"""Logging: JSON/console output, verbosity, and no private key material, ever."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kcp.runtime.logging import (
    REDACTED_PRIVATE_KEY,
    configure_logging,
    get_logger,
    level_for,
    reconcile_context,
    redact_private_keys,
    redact_text,
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(**config)


@pytest.fixture(scope="module")
def pem_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def pkcs8_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def body(pem: str) -> str:
    """A line from the middle of the key: must never appear in output."""
    return pem.splitlines()[1]


def test_redact_text_replaces_pem_blocks_and_keeps_the_rest(pem_key: str, pkcs8_key: str) -> None:
    text = f"before\n{pem_key}middle {pkcs8_key} after"
    redacted = redact_text(text)
    assert body(pem_key) not in redacted and body(pkcs8_key) not in redacted
    assert redacted.count(REDACTED_PRIVATE_KEY) == 2
    assert redacted.startswith("before\n") and redacted.endswith(" after")


def test_truncated_and_repr_escaped_keys_are_redacted(pem_key: str) -> None:
    truncated = pem_key[: len(pem_key) // 2]
    assert body(pem_key) not in redact_text("x " + truncated)
    escaped = repr(pem_key.encode())  # newlines as \\n, as in a repr() of bytes
    assert body(pem_key) not in redact_text(escaped)


def test_base64_encoded_keys_as_in_secret_data_are_redacted(pem_key: str) -> None:
    encoded = base64.b64encode(pem_key.encode()).decode()
    redacted = redact_text(f'{{"tls.key": "{encoded}"}}')
    assert encoded[:40] not in redacted
    assert REDACTED_PRIVATE_KEY in redacted
    # A base64 certificate is left alone: only private keys are redacted.
    cert_like = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n").decode()
    assert redact_text(cert_like) == cert_like


def test_processor_walks_bytes_and_nested_values(pem_key: str) -> None:
    event = {
        "event": "loaded",
        "key_bytes": pem_key.encode(),
        "nested": {"list": [pem_key, 1, None], "ok": "fine"},
        "tuple": ("a", pem_key),
        "safe_bytes": b"not a key",
        "number": 3,
    }
    out = redact_private_keys(None, "info", event)
    assert out["key_bytes"] == REDACTED_PRIVATE_KEY
    assert out["nested"]["list"][0] == REDACTED_PRIVATE_KEY
    assert out["nested"]["list"][1:] == [1, None]
    assert out["nested"]["ok"] == "fine"
    assert out["tuple"][1] == REDACTED_PRIVATE_KEY
    assert out["safe_bytes"] == b"not a key"
    assert out["number"] == 3


def test_objects_whose_repr_holds_a_key_are_redacted(pem_key: str) -> None:
    class Holder:
        def __repr__(self) -> str:
            return f"Holder({pem_key!r})"

    out = redact_private_keys(None, "info", {"event": "x", "holder": Holder()})
    assert body(pem_key) not in str(out["holder"])


def test_no_key_reaches_json_output_from_structlog_stdlib_or_tracebacks(pem_key: str) -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    get_logger("t").info("event with key", key=pem_key, raw=pem_key.encode())
    get_logger("t").info(f"key in the message {pem_key}")
    logging.getLogger("third.party").warning("stdlib says %s", pem_key)
    try:
        raise ValueError(f"bad key {pem_key}")
    except ValueError:
        get_logger("t").exception("failed")
    text = out.getvalue()
    assert body(pem_key) not in text
    assert "PRIVATE KEY-----" not in text.replace(REDACTED_PRIVATE_KEY, "")
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 4
    assert lines[0]["key"] == REDACTED_PRIVATE_KEY
    assert lines[2]["event"] == f"stdlib says {REDACTED_PRIVATE_KEY}"
    assert "Traceback" in lines[3]["exception"]


def test_console_output_on_request_is_redacted_too(pem_key: str) -> None:
    out = io.StringIO()
    configure_logging(json=False, stream=out)
    try:
        raise ValueError(pem_key)
    except ValueError:
        get_logger("t").exception("failed", key=pem_key)
    text = out.getvalue()
    assert "failed" in text
    assert body(pem_key) not in text


def test_json_is_chosen_when_the_stream_is_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    get_logger("t").info("hello", answer=42)
    line = json.loads(out.getvalue())
    assert line["event"] == "hello" and line["answer"] == 42 and line["level"] == "info"
    assert "timestamp" in line


def test_verbosity_controls_debug_lines() -> None:
    out = io.StringIO()
    configure_logging(0, json=True, stream=out)
    get_logger("t").debug("hidden")
    configure_logging(1, json=True, stream=out)
    get_logger("t").debug("shown")
    text = out.getvalue()
    assert "hidden" not in text and "shown" in text
    configure_logging(level="warning", json=True, stream=out)
    get_logger("t").info("quiet")
    assert "quiet" not in out.getvalue()


def test_a_later_set_up_shows_kcp_info_lines_the_benchmarks_quieted() -> None:
    from kcp.bench.environment import quiet_logging

    quiet_logging()
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    get_logger("kcp.runtime.controller").info("shown")
    assert json.loads(out.getvalue())["event"] == "shown"


def test_level_for() -> None:
    assert level_for(0) == logging.INFO
    assert level_for(2) == logging.DEBUG
    assert level_for(0, "error") == logging.ERROR
    with pytest.raises(ValueError):
        level_for(0, "loud")


def test_reconcile_context_binds_and_unbinds() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    with reconcile_context("kcp", "ns", "name") as rid:
        get_logger("t").info("inside")
    get_logger("t").info("after")
    inside, after = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["reconcile_id"] == rid
    assert (inside["controller"], inside["namespace"], inside["name"]) == ("kcp", "ns", "name")
    assert "reconcile_id" not in after


def test_logging_flags() -> None:
    import argparse

    from kcp.runtime.logging import add_logging_arguments

    parser = argparse.ArgumentParser()
    add_logging_arguments(parser)
    args = parser.parse_args(["--v", "2", "--log-format", "json"])
    assert (args.v, args.log_level, args.log_format) == (2, None, "json")
    assert parser.parse_args([]).log_format == "auto"
