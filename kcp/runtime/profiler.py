"""`--profiler-address`: on-demand CPU profiles and thread dumps of this process.

`/debug/pprof/profile?seconds=N` runs py-spy against our own pid for N seconds
(1..300) and returns a speedscope JSON document (`format=flamegraph` for an SVG,
`format=raw` for collapsed stacks; `nonblocking=1` samples without pausing us, see
`record`). `/debug/pprof/threads` returns every
thread's stack, from `py-spy dump` or, when py-spy cannot attach, from
`sys._current_frames()`. py-spy needs ptrace on this process; when it is denied
the answer is a 503 that says how to allow it, not a traceback.

When the server starts it declares, with `prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY)`,
that any process of our own user may trace us: under Yama's usual
`kernel.yama.ptrace_scope=1` a process may otherwise only trace its descendants
(or hold CAP_SYS_PTRACE), and py-spy is our child, not our parent. So a non-root
manager can profile itself without root.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path

from kcp.runtime.logging import get_logger
from kcp.runtime.ops import OpsServer, Response, Route, parse_address

DEFAULT_PROFILE_SECONDS = 30
"""Profile length when `seconds` is not given (as Go's pprof)."""

MAX_PROFILE_SECONDS = 300
"""Longest profile accepted: `seconds` must be within 1..300."""

DEFAULT_SAMPLE_RATE = 100
"""Samples per second (py-spy's default; a few percent of one core)."""

PTRACE_HELP = (
    "py-spy could not attach (ptrace not permitted): run with SYS_PTRACE "
    "(or kernel.yama.ptrace_scope=0), see README Profiling"
)
MISSING_HELP = "py-spy not found next to the Python interpreter or on PATH, see README Profiling"

_FORMATS: Mapping[str, tuple[str, str]] = {
    "speedscope": ("speedscope", "application/json"),
    "flamegraph": ("flamegraph", "image/svg+xml"),
    "raw": ("raw", "text/plain; charset=utf-8"),
}

_BOOLEANS: Mapping[str, bool] = {"1": True, "true": True, "0": False, "false": False}

PR_SET_PTRACER = 0x59616D61
"""`prctl` option of Yama (the bytes "Yama"): who besides our ancestors may ptrace us."""

PR_SET_PTRACER_ANY = ctypes.c_ulong(-1).value
"""`PR_SET_PTRACER` argument meaning "any process" (still only of our user, unless it
has CAP_SYS_PTRACE)."""

_log = get_logger("kcp.runtime.profiler")


class ProfilingUnavailable(Exception):
    """py-spy is missing or may not attach; the message says what to do."""


def _prctl(option: int, arg2: int) -> tuple[int, int]:
    """`prctl(option, arg2, 0, 0, 0)` through libc: (result, errno)."""
    libc = ctypes.CDLL(None, use_errno=True)
    call = libc.prctl
    call.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
    call.restype = ctypes.c_int
    result = int(call(option, arg2, 0, 0, 0))
    return result, ctypes.get_errno() if result != 0 else 0


def allow_same_user_tracers() -> bool:
    """Let any process of this user ptrace us (Yama's `PR_SET_PTRACER_ANY`), so that
    a py-spy child may attach under `ptrace_scope=1` without CAP_SYS_PTRACE.

    Linux only; True when the kernel accepted it. Failure is harmless and only logged
    at debug level: without Yama the call fails (EINVAL) and nothing needs allowing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        result, errno = _prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY)
    except (OSError, AttributeError) as exc:  # no libc / no prctl symbol
        _log.debug("Could not call prctl(PR_SET_PTRACER)", error=str(exc))
        return False
    if result != 0:
        _log.debug("prctl(PR_SET_PTRACER, ANY) refused", error=os.strerror(errno))
        return False
    _log.debug("Processes of this user may ptrace this one (PR_SET_PTRACER_ANY)")
    return True


class ProfilerServer(OpsServer):
    """The profiler's ops server: allows same-user tracers when it starts."""

    def start(self) -> OpsServer:
        allow_same_user_tracers()
        return super().start()


def find_py_spy() -> str | None:
    """py-spy next to `sys.executable` (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def _attach_error(stderr: str) -> ProfilingUnavailable | None:
    lowered = stderr.lower()
    if any(
        marker in lowered
        for marker in ("permission denied", "operation not permitted", "ptrace", "eperm")
    ):
        return ProfilingUnavailable(PTRACE_HELP)
    return None


def record(
    seconds: int,
    fmt: str = "speedscope",
    rate: int = DEFAULT_SAMPLE_RATE,
    *,
    nonblocking: bool = False,
) -> bytes:
    """Profile this process for `seconds` and return the document in `fmt`.

    By default py-spy pauses every thread for each sample (consistent stacks); with
    dozens of threads on a loaded machine that stop-and-go is charged to our CPU time
    (a busy rollout measured ~3x) and py-spy falls behind, stretching the profile past
    `seconds` (it counts samples). `nonblocking` reads the stacks of the running
    process instead: a torn stack now and then, but our CPU figures stay our own."""
    py_spy = find_py_spy()
    if py_spy is None:
        raise ProfilingUnavailable(MISSING_HELP)
    py_spy_format, _ = _FORMATS[fmt]
    with tempfile.TemporaryDirectory(prefix="kcp-profile-") as directory:
        output = Path(directory) / "profile"
        command = [
            py_spy,
            "record",
            "--pid",
            str(os.getpid()),
            "--duration",
            str(seconds),
            "--rate",
            str(rate),
            "--format",
            py_spy_format,
            "--output",
            str(output),
            *(["--nonblocking"] if nonblocking else []),
        ]
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
        if completed.returncode != 0 or not output.exists():
            denied = _attach_error(completed.stderr)
            if denied is not None:
                raise denied
            raise RuntimeError(f"py-spy failed: {completed.stderr.strip()[-500:]}")
        return output.read_bytes()


def dump_threads() -> str:
    """Every thread's stack: py-spy's dump when it can attach, else the interpreter's view."""
    py_spy = find_py_spy()
    if py_spy is not None:
        try:
            completed = subprocess.run(
                [py_spy, "dump", "--pid", str(os.getpid())],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except subprocess.TimeoutExpired:
            completed = None
        if completed is not None and completed.returncode == 0:
            return completed.stdout
    return python_thread_dump()


def python_thread_dump() -> str:
    """Stacks from `sys._current_frames()`, headed by thread name and id."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    sections = []
    for ident, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame))
        sections.append(f'Thread {ident} "{names.get(ident, "?")}":\n{stack}')
    return "\n".join(sections)


def _profile_route() -> Route:
    busy = threading.Lock()

    def route(query: dict[str, list[str]], _headers: Mapping[str, str]) -> Response:
        try:
            seconds = int(query.get("seconds", [str(DEFAULT_PROFILE_SECONDS)])[0])
            rate = int(query.get("rate", [str(DEFAULT_SAMPLE_RATE)])[0])
        except ValueError:
            return _text(HTTPStatus.BAD_REQUEST, "seconds and rate must be integers")
        if not 1 <= seconds <= MAX_PROFILE_SECONDS:
            return _text(HTTPStatus.BAD_REQUEST, f"seconds must be 1..{MAX_PROFILE_SECONDS}")
        if not 1 <= rate <= 1000:
            return _text(HTTPStatus.BAD_REQUEST, "rate must be 1..1000")
        nonblocking_text = query.get("nonblocking", ["0"])[0].lower()
        if nonblocking_text not in _BOOLEANS:
            return _text(HTTPStatus.BAD_REQUEST, "nonblocking must be 1 or 0")
        nonblocking = _BOOLEANS[nonblocking_text]
        fmt = query.get("format", ["speedscope"])[0]
        if fmt not in _FORMATS:
            return _text(HTTPStatus.BAD_REQUEST, f"format must be one of {', '.join(_FORMATS)}")
        if not busy.acquire(blocking=False):
            return _text(HTTPStatus.TOO_MANY_REQUESTS, "a profile is already being recorded")
        try:
            _log.info(
                "Recording profile",
                seconds=seconds,
                format=fmt,
                rate=rate,
                nonblocking=nonblocking,
            )
            document = record(seconds, fmt, rate, nonblocking=nonblocking)
        except ProfilingUnavailable as exc:
            _log.warning("Profiling unavailable", reason=str(exc))
            return _text(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            _log.error("Profiling failed", error=str(exc))
            return _text(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
        finally:
            busy.release()
        return Response(HTTPStatus.OK, document, _FORMATS[fmt][1])

    return route


def _threads_route(query: dict[str, list[str]], _headers: Mapping[str, str]) -> Response:
    if query.get("source", [""])[0] == "python":
        return _text(HTTPStatus.OK, python_thread_dump())
    return _text(HTTPStatus.OK, dump_threads())


def _index_route(_query: dict[str, list[str]], _headers: Mapping[str, str]) -> Response:
    return _text(
        HTTPStatus.OK,
        "/debug/pprof/profile?seconds=N[&format=speedscope|flamegraph|raw][&rate=HZ]"
        "[&nonblocking=1]\n"
        "/debug/pprof/threads[?source=python]\n",
    )


def _text(status: int, message: str) -> Response:
    return Response(status, (message.rstrip("\n") + "\n").encode())


def profiler_server(address: str) -> OpsServer | None:
    """The `--profiler-address` server (not started), or None when disabled ("" or "0")."""
    if parse_address(address) is None:
        return None
    return ProfilerServer(
        address,
        {
            "/debug/pprof/": _index_route,
            "/debug/pprof/profile": _profile_route(),
            "/debug/pprof/threads": _threads_route,
        },
        name="profiler",
    )
