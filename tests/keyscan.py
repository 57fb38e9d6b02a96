"""Looking for private keys in files by material no other key shares.

A key is looked for by windows of its private numbers (RSA's d, p, q and CRT values,
EC's scalar), never by what other keys or its certificate also hold: every RSA-2048
PKCS#8 key starts with the same 48 base64 characters (version, algorithm identifier,
lengths), and the modulus or public point is in the key's certificate.

The windows are the key as text: the base64 of its DER (a PEM body once its newlines
are gone) and the base64 of its PEM (a kubeconfig's ``client-key-data``, a Secret's
data), in PKCS#8 and the traditional format. A window counts when at least
``MIN_PRIVATE_BITS`` of it encode private bytes. In a file, base64 runs are compared
at every ``STRIDE``-th character from their start, once wrapped lines (also with
newlines escaped in JSON) are joined, so a PEM body or a wrapped value is one run.
Binary files can also be searched for raw bytes of the private numbers
(``KeyIndex.find(raw=...)``). A file holds a key when ``MIN_HITS`` of its windows
are in it.

``written_files`` walks the places a process can write, skipping other tools'
caches (exact names such as ``.mypy_cache`` and prefixes such as ``go-build``:
Go's per-build work directories are ``/tmp/go-build<digits>``).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "MIN_HITS",
    "KeyIndex",
    "KeyNeedles",
    "base64_windows",
    "is_tool_cache",
    "key_needles",
    "scan_roots",
    "written_files",
]

WINDOW = 32
"""Base64 characters per window: 24 bytes."""
STRIDE = 16
"""Windows start every STRIDE characters, in the key's text and in a file's runs alike."""
MIN_PRIVATE_BITS = 96
"""Bits of private numbers a window must encode to be used."""
MIN_HITS = 2
"""Windows (or raw slices) of one key a file must hold to be reported."""
RAW_WINDOW = 16
"""Bytes per raw slice of a private number."""
MAX_FILE = 128 * 1024 * 1024
ZERO_RUN = bytes(4096)

BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{%d,}" % WINDOW)
WRAPPED = re.compile(rb"([A-Za-z0-9+/]{48})\r?\n[ \t]*(?=[A-Za-z0-9+/]{4})")
"""A newline (and the next line's indentation) inside wrapped base64: after at least 48
base64 characters, before more. PEM bodies and wrapped values become one run; a value
that starts a line after a short word stays a run of its own."""

TOOL_CACHES = frozenset(
    {
        ".git",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "__pycache__",
        ".venv",
        "node_modules",
        "go-build",
        "pip",
    }
)
"""Directories other tools write (compilers, linters, package managers): not kcp's."""
TOOL_CACHE_PREFIXES = ("go-build", "pip-")
"""Their per-run work directories: ``/tmp/go-build1234``, ``/tmp/pip-install-x``."""


@dataclass(eq=False)
class KeyNeedles:
    """How one key looks in a file: text windows and raw slices of its private numbers."""

    owner: str
    by: str
    pkcs8: bytes = field(repr=False)
    windows: frozenset[bytes] = field(repr=False)
    raw: tuple[bytes, ...] = field(repr=False)


def private_numbers(pkcs8_der: bytes) -> list[int]:
    """The numbers only the key's holder knows (RSA: d, p, q, dP, dQ, qInv; EC: the scalar)."""
    key = serialization.load_der_private_key(
        pkcs8_der, password=None, unsafe_skip_rsa_key_validation=True
    )
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        return [numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [key.private_numbers().private_value]
    raise TypeError(f"no private numbers known for a {type(key).__name__}")


def _big_endian(number: int) -> bytes:
    return number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")


def _private_bytes_mask(der: bytes, numbers: list[int]) -> list[bool]:
    """For each byte of ``der``: whether it is a byte of a private number."""
    mask = [False] * len(der)
    for number in numbers:
        encoded = _big_endian(number)
        start = der.find(encoded)
        if start < 0:
            raise ValueError("a private number is not in the key's DER")
        mask[start : start + len(encoded)] = [True] * len(encoded)
    return mask


def _pem_private_bits(pem: bytes, mask: list[bool]) -> list[int]:
    """For each byte of ``pem``: the private bits it encodes (6 for a base64 character of
    the body whose bits all come from private bytes, else 0)."""
    bits: list[int] = []
    body = 0
    for line in pem.splitlines(keepends=True):
        if line.startswith(b"-----"):
            bits.extend([0] * len(line))
            continue
        for char in line:
            if char in b"\r\n":
                bits.append(0)
                continue
            first, last = body * 6 // 8, (body * 6 + 5) // 8
            private = last < len(mask) and all(mask[first : last + 1])
            bits.append(6 if private else 0)
            body += 1
    return bits


def _text_windows(source: bytes, bits: list[int]) -> Iterator[bytes]:
    """Windows of ``base64(source)`` at every STRIDE-th character that encode at least
    MIN_PRIVATE_BITS private bits (``bits[i]``: private bits in ``source[i]``)."""
    encoded = base64.b64encode(source)
    for offset in range(0, len(encoded) - WINDOW + 1, STRIDE):
        window = encoded[offset : offset + WINDOW]
        covered = bits[offset // 4 * 3 : (offset + WINDOW) // 4 * 3]
        if b"=" not in window and sum(covered) >= MIN_PRIVATE_BITS:
            yield window


def key_needles(pkcs8_der: bytes, *, owner: str = "", by: str = "") -> KeyNeedles:
    """The windows and raw slices of the key whose PKCS#8 DER is ``pkcs8_der``."""
    numbers = private_numbers(pkcs8_der)
    key = serialization.load_der_private_key(
        pkcs8_der, password=None, unsafe_skip_rsa_key_validation=True
    )
    windows: set[bytes] = set()
    formats = (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL)
    for fmt in formats:
        der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        mask = _private_bytes_mask(der, numbers)
        from_der = list(_text_windows(der, [8 if private else 0 for private in mask]))
        from_pem = list(_text_windows(pem, _pem_private_bits(pem, mask)))
        if len(from_der) < MIN_HITS or len(from_pem) < MIN_HITS:
            raise ValueError(f"fewer than {MIN_HITS} private windows in a {fmt.name} key")
        windows.update(from_der, from_pem)
    raw = tuple(
        number[start : start + RAW_WINDOW]
        for number in (_big_endian(n) for n in numbers)
        for start in (0, RAW_WINDOW)
        if len(number) >= start + RAW_WINDOW
    )
    return KeyNeedles(owner, by, pkcs8_der, frozenset(windows), raw[:MIN_HITS])


def base64_windows(data: bytes) -> Iterator[bytes]:
    """The windows of ``data`` compared with keys' windows: every STRIDE-th character of
    each base64 run, once wrapped lines are joined (``WRAPPED``)."""
    text = WRAPPED.sub(rb"\1", data.replace(b"\\n", b"\n"))
    for match in BASE64_RUN.finditer(text):
        run = match.group(0)
        for offset in range(0, len(run) - WINDOW + 1, STRIDE):
            yield run[offset : offset + WINDOW]


class KeyIndex:
    """Many keys' windows, to find which of them a file's content holds."""

    def __init__(self, keys: Iterable[KeyNeedles]) -> None:
        self.keys = list(keys)
        self._by_window: dict[bytes, list[KeyNeedles]] = {}
        for key in self.keys:
            for window in key.windows:
                self._by_window.setdefault(window, []).append(key)

    def find(self, data: bytes, *, raw: Iterable[KeyNeedles] = ()) -> list[KeyNeedles]:
        """The keys ``data`` holds as text; and those of ``raw`` it holds as raw bytes."""
        # etcd preallocates its 64 MiB WAL segments with zeros, and the suite's fleets write
        # dozens of them into /tmp: dropped first (a fast search), they cost no regex time.
        # A key's text or numbers never hold a run of ZERO_RUN zero bytes.
        data = data.replace(ZERO_RUN, b"")
        seen: dict[int, set[bytes]] = {}
        found: list[KeyNeedles] = []
        for window in base64_windows(data):
            for key in self._by_window.get(window, ()):
                windows = seen.setdefault(id(key), set())
                windows.add(window)
                if len(windows) == MIN_HITS:
                    found.append(key)
        for key in raw:
            if key not in found and key.raw and all(part in data for part in key.raw):
                found.append(key)
        return found


def is_tool_cache(name: str) -> bool:
    """Whether a directory called ``name`` is another tool's cache or work directory."""
    return name in TOOL_CACHES or name.startswith(TOOL_CACHE_PREFIXES)


def scan_roots(*extra: Path) -> list[Path]:
    """Where a process can write besides its own directories: the temporary directories
    (also ``/dev/shm`` and ``/var/tmp``), the working directory, ``~/.cache``; and ``extra``."""
    return sorted(
        {
            Path("/tmp"),
            Path("/var/tmp"),
            Path("/dev/shm"),
            Path.cwd(),
            Path.home() / ".cache",
            *extra,
        }
    )


def written_files(roots: Iterable[Path], *, since: float) -> Iterator[Path]:
    """Regular files under ``roots`` modified at or after ``since`` (wall clock), each once,
    not empty nor larger than MAX_FILE, outside other tools' caches."""
    seen: set[tuple[int, int]] = set()
    for root in roots:
        for directory, subdirs, files in os.walk(root, followlinks=False):
            subdirs[:] = [d for d in subdirs if not is_tool_cache(d)]
            for name in files:
                path = os.path.join(directory, name)
                try:
                    info = os.stat(path, follow_symlinks=False)
                except OSError:
                    continue
                if (info.st_mode & 0o170000) != 0o100000:  # regular files only
                    continue
                if not (0 < info.st_size <= MAX_FILE) or info.st_mtime < since:
                    continue
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                yield Path(path)
