"""Reading a py-spy speedscope document: samples, self time by function, key generation.

py-spy writes one sampled profile per thread; each sample is a stack of frame
indexes, root first. py-spy is meant to leave idle threads out, but where it
cannot tell (it could not here: idle workers show up in `Condition.wait`), a
sample whose innermost frame is a known wait — a lock or condition, a queue, a
selector, a socket or TLS read, a gRPC call or connectivity poll — counts as
waiting. Shares are of the remaining, *active* samples; totals of both are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "KEYGEN_FUNCTIONS",
    "WAITING_LEAVES",
    "ProfileSummary",
    "is_key_generation",
    "is_waiting",
    "summarize",
]

KEYGEN_FUNCTIONS = ("generate_private_key",)
"""Function names of private key generation: `cryptography`'s RSA/EC
`generate_private_key` and `kcp.certs.keys.generate_private_key`."""

_KEYGEN_FILES = ("cryptography", "kcp/certs/keys.py")

WAITING_LEAVES: tuple[tuple[str, str], ...] = (
    ("wait", "threading.py"),
    ("_wait_for_tstate_lock", "threading.py"),
    ("_worker", "concurrent/futures/thread.py"),
    ("select", "selectors.py"),
    ("read", "ssl.py"),
    ("recv_into", "ssl.py"),
    ("readinto", "socket.py"),
    ("accept", "socket.py"),
    ("do_poll", "urllib3/util/wait.py"),
    ("_poll_connectivity", "grpc/_channel.py"),
    ("_blocking", "grpc/_channel.py"),
    ("_deliver", "grpc/_channel.py"),
)
"""(function name suffix, file suffix) of innermost frames that mean "blocked, not running"."""


@dataclass(frozen=True)
class ProfileSummary:
    samples: int
    """Every sample of every thread, waiting ones included."""
    active_samples: int
    """Samples not in a known wait: the ones shares are taken of."""
    keygen_samples: int
    top_self: list[dict[str, Any]]
    threads: int

    @property
    def keygen_share(self) -> float:
        return self.keygen_samples / self.active_samples if self.active_samples else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "active_samples": self.active_samples,
            "keygen_samples": self.keygen_samples,
            "keygen_share": round(self.keygen_share, 5),
            "threads_sampled": self.threads,
            "top_functions": self.top_self,
        }


def is_key_generation(frame: dict[str, Any]) -> bool:
    """Whether a speedscope frame is a private key generation function."""
    name = str(frame.get("name") or "")
    file = str(frame.get("file") or "")
    return name in KEYGEN_FUNCTIONS and any(part in file for part in _KEYGEN_FILES)


def is_waiting(frame: dict[str, Any]) -> bool:
    """Whether an innermost frame is a known wait (see `WAITING_LEAVES`)."""
    name = str(frame.get("name") or "")
    file = str(frame.get("file") or "")
    return any(name.endswith(n) and file.endswith(f) for n, f in WAITING_LEAVES)


def summarize(document: dict[str, Any] | Path, top: int = 10) -> ProfileSummary:
    """Total samples, samples with key generation anywhere on the stack, top `top` by self."""
    doc: dict[str, Any] = (
        json.loads(document.read_text()) if isinstance(document, Path) else document
    )
    frames: list[dict[str, Any]] = doc["shared"]["frames"]
    keygen = {i for i, frame in enumerate(frames) if is_key_generation(frame)}
    waiting = {i for i, frame in enumerate(frames) if is_waiting(frame)}
    self_samples: dict[tuple[str, str], int] = {}
    lines: dict[tuple[str, str], int] = {}
    total = active = keygen_total = 0
    profiles = [p for p in doc.get("profiles", []) if p.get("type") == "sampled"]
    for profile in profiles:
        for stack in profile.get("samples", []):
            if not stack:
                continue
            total += 1
            if stack[-1] in waiting:
                continue
            active += 1
            if keygen and any(index in keygen for index in stack):
                keygen_total += 1
            leaf = frames[stack[-1]]
            key = (str(leaf.get("name")), str(leaf.get("file")))
            self_samples[key] = self_samples.get(key, 0) + 1
            lines.setdefault(key, int(leaf.get("line") or 0))
    ranked = sorted(self_samples.items(), key=lambda item: item[1], reverse=True)[:top]
    top_self = [
        {
            "function": name,
            "file": _short(file),
            "line": lines[(name, file)],
            "self_samples": count,
            "self_share": round(count / active, 4) if active else 0.0,
        }
        for (name, file), count in ranked
    ]
    return ProfileSummary(total, active, keygen_total, top_self, len(profiles))


def _short(file: str) -> str:
    """A path from its package root (`.../site-packages/grpc/x.py` -> `grpc/x.py`)."""
    for marker in ("site-packages/", "/lib/python3"):
        if marker in file:
            tail = file.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker.startswith("/lib") and "/" in tail else tail
    if "/kcp/" in file:
        return "kcp/" + file.split("/kcp/", 1)[1]
    return file
