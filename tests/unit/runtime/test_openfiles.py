"""`kcp run` raises its open-file limit to the hard one, as Go programs do when they start."""

from __future__ import annotations

import resource
import subprocess
import sys

from kcp.runtime.openfiles import raise_open_files_limit

_CHILD = """
import resource
from kcp.runtime.openfiles import raise_open_files_limit
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
"""


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    """In a child process: the test run's own limit stays as it is."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    returned, soft, hard = (int(x) for x in out)
    if hard == resource.RLIM_INFINITY:
        assert soft == hard or soft >= 256  # the kernel may cap an unlimited hard limit
    else:
        assert returned == soft == hard


def test_raising_an_already_raised_limit_changes_nothing() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        return  # this process's limit is not ours to change
    assert raise_open_files_limit() == (None if soft == resource.RLIM_INFINITY else soft)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)
