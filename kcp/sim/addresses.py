"""Loopback addresses of their own for simulated machines and load balancers.

Every simulated host gets a random address in 127.0.0.0/8 (never 127.0.0.1), so
its processes can listen on the standard ports (2379, 2380, 2381, 6443) as they
would on a kubeadm node. An address is held with an exclusive lock on a file in
a directory shared by every run on this machine, and only handed out after a
test bind of each port succeeds: two simultaneous runs (tests next to `kcp sim`)
can never be given the same address.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import socket
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DEFAULT_LOCK_DIR", "AddressError", "LoopbackAddresses"]

DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "kcp-sim-addresses"
"""Where every run on this machine records the addresses it holds (one lock file each)."""

_ATTEMPTS = 200


class AddressError(RuntimeError):
    """No free loopback address could be found (or a wanted one is taken)."""


class LoopbackAddresses:
    """Hands out and takes back loopback addresses; thread-safe.

    `allocate(ports)` returns an address on which every port of `ports` could be
    bound just now, locked for this process until `release` (or `close`, or the
    process's exit, which drops the file locks).
    """

    def __init__(self, lock_dir: Path = DEFAULT_LOCK_DIR, *, rng: random.Random | None = None):
        self.lock_dir = lock_dir
        self._rng = rng or random.SystemRandom()
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def held(self) -> list[str]:
        """The addresses this allocator holds now."""
        with self._lock:
            return sorted(self._held)

    def allocate(self, ports: Sequence[int], *, prefer: str | None = None) -> str:
        """A free address for `ports`; `prefer` is tried first (e.g. an endpoint kept in a spec)."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        if prefer is not None and self._try(prefer, ports):
            return prefer
        for _ in range(_ATTEMPTS):
            candidate = self._random_address()
            if self._try(candidate, ports):
                return candidate
        raise AddressError(
            f"found no free loopback address for ports {list(ports)} after {_ATTEMPTS} tries"
        )

    def release(self, address: str) -> None:
        """Give `address` back (its lock file is unlocked and removed)."""
        with self._lock:
            fd = self._held.pop(address, None)
        if fd is None:
            return
        with contextlib.suppress(OSError):
            (self.lock_dir / f"{address}.lock").unlink()
        os.close(fd)

    def close(self) -> None:
        """Release every address still held."""
        for address in self.held:
            self.release(address)

    def _random_address(self) -> str:
        while True:
            octets = [
                self._rng.randrange(256),
                self._rng.randrange(256),
                self._rng.randrange(1, 255),
            ]
            if octets != [0, 0, 1] and octets[:2] != [0, 0]:
                return "127." + ".".join(str(o) for o in octets)

    def _try(self, address: str, ports: Sequence[int]) -> bool:
        with self._lock:
            if address in self._held:
                return False
        path = self.lock_dir / f"{address}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise
        # The holder unlinks the file on release: a lock on an unlinked file means nothing.
        if not _same_file(fd, path) or not all(_bindable(address, port) for port in ports):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        with self._lock:
            self._held[address] = fd
        return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def _bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True
