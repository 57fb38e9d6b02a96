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


def test_the_peers_of_this_process_connections_are_seen_from_proc() -> None:
    """What the reliability suite and `kcp bench scale` read to tell which servers a
    controller holds connections to (an etcd client port, or only API servers)."""
    import socket

    from kcp.bench.procstat import tcp_connections

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    try:
        # Both ends are this process's: the client's peer is the listener's port.
        assert ("127.0.0.1", port) in tcp_connections()
        assert tcp_connections(remote_port=port) == [("127.0.0.1", port)]
        assert ("127.0.0.1", port) not in tcp_connections(remote_port=port + 1)
    finally:
        for sock in (client, accepted, listener):
            sock.close()
