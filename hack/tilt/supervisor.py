"""Run a command and restart it whenever a trigger file is touched: Tilt's live update.

    python supervisor.py [--trigger /tmp/kcp-restart] [--poll 0.5] -- kcp run --leader-elect

The Tiltfile syncs changed sources into the container, then runs
`touch /tmp/kcp-restart`; within one poll interval the child gets SIGTERM (and
SIGKILL after --grace seconds), then starts again from the new code. No image
rebuild, no pod restart. SIGTERM/SIGINT to the supervisor are passed to the
child and the supervisor exits with the child's code. If the child exits on its
own (a crash, a lost Lease), it is started again after a short back-off, as the
kubelet would restart the container, so a syntax error is fixed by the next sync.

Only the standard library: it runs in the same image as kcp, in the dev stage.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

# The container's own /tmp (an emptyDir), not a shared directory.
DEFAULT_TRIGGER = "/tmp/kcp-restart"  # noqa: S108
"""Touched by the Tiltfile's live_update `run()` step after a sync."""


def _log(message: str) -> None:
    print(f"[supervisor] {message}", file=sys.stderr, flush=True)


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


def _stop(child: subprocess.Popen[bytes], grace: float) -> int:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _log(f"child {child.pid} ignored SIGTERM for {grace:.0f}s: killing it")
            child.kill()
    return child.wait()


def supervise(
    command: Sequence[str], trigger: str, poll: float, grace: float, backoff: float
) -> int:
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    seen = _mtime(trigger)
    while True:
        _log(f"starting: {' '.join(command)}")
        child = subprocess.Popen(list(command))
        restart = False
        while not stopping:
            time.sleep(poll)
            current = _mtime(trigger)
            if current is not None and current != seen:
                seen = current
                restart = True
                break
            if child.poll() is not None:
                break
        if stopping:
            code = _stop(child, grace)
            _log(f"stopped by signal {stopping[0]}; child exited with {code}")
            return code
        if restart:
            code = _stop(child, grace)
            _log(f"{trigger} touched: restarting (child exited with {code})")
            continue
        _log(f"child exited with {child.returncode}; restarting in {backoff:.0f}s")
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(poll, backoff))
        if stopping:
            return child.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Restart a command when a file is touched.")
    parser.add_argument("--trigger", default=DEFAULT_TRIGGER, help="file whose touch restarts")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between checks")
    parser.add_argument("--grace", type=float, default=35.0, help="seconds before SIGKILL")
    parser.add_argument("--backoff", type=float, default=2.0, help="seconds before a re-start")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command [args...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    return supervise(command, args.trigger, args.poll, args.grace, args.backoff)


if __name__ == "__main__":
    raise SystemExit(main())
