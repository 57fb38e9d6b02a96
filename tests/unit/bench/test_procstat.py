"""Thread accounting of a measured process: its own threads apart from gRPC core's."""

from __future__ import annotations

import threading

from kcp.bench.procstat import split_threads, thread_names


def test_grpc_core_threads_are_counted_apart() -> None:
    names = {"python3": 28, "event_engine": 8, "grpc_global_tim": 1, "lifeguard": 1}
    assert split_threads(names) == (28, 10)
    assert split_threads({}) == (0, 0)


def test_this_process_threads_are_seen_by_name() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        own, _grpc = split_threads(thread_names())
        # Every Python thread is the process's own (native ones started by
        # extensions are too, and threading does not know about those).
        assert own >= threading.active_count() >= 2
    finally:
        stop.set()
        worker.join()
