"""Starting a child that a test will stop with Ctrl-C (SIGINT)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["sigint_reaches_children"]


@contextlib.contextmanager
def sigint_reaches_children() -> Iterator[None]:
    """Children started inside do not inherit an ignored SIGINT.

    A shell without job control starts background commands (`make test &`) with
    SIGINT ignored, and an ignored signal stays ignored across exec: the child
    would never see the test's Ctrl-C. A handled signal is reset to its default
    in the child instead.
    """
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
