"""Reading a py-spy speedscope document: samples, self time by function, key generation.

py-spy writes one sampled profile per thread; each sample is a stack of frame
indexes, root first, with a weight. Idle threads are left out by py-spy, so
every sample is a moment a thread was running (or waiting on the GIL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["KEYGEN_FUNCTIONS", "ProfileSummary", "is_key_generation", "summarize"]

KEYGEN_FUNCTIONS = ("generate_private_key",)
"""Function names of private key generation: `cryptography`'s RSA/EC
`generate_private_key` and `kcp.certs.keys.generate_private_key`."""

_KEYGEN_FILES = ("cryptography", "kcp/certs/keys.py")


@dataclass(frozen=True)
class ProfileSummary:
    samples: int
    keygen_samples: int
    top_self: list[dict[str, Any]]
    threads: int

    @property
    def keygen_share(self) -> float:
        return self.keygen_samples / self.samples if self.samples else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
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


def summarize(document: dict[str, Any] | Path, top: int = 10) -> ProfileSummary:
    """Total samples, samples with key generation anywhere on the stack, top `top` by self."""
    doc: dict[str, Any] = (
        json.loads(document.read_text()) if isinstance(document, Path) else document
    )
    frames: list[dict[str, Any]] = doc["shared"]["frames"]
    keygen = {i for i, frame in enumerate(frames) if is_key_generation(frame)}
    self_weight: dict[tuple[str, str], float] = {}
    lines: dict[tuple[str, str], int] = {}
    total = 0.0
    keygen_total = 0.0
    profiles = [p for p in doc.get("profiles", []) if p.get("type") == "sampled"]
    for profile in profiles:
        weights = profile.get("weights") or [1] * len(profile.get("samples", []))
        for stack, weight in zip(profile.get("samples", []), weights, strict=False):
            if not stack:
                continue
            total += weight
            if keygen and any(index in keygen for index in stack):
                keygen_total += weight
            leaf = frames[stack[-1]]
            key = (str(leaf.get("name")), str(leaf.get("file")))
            self_weight[key] = self_weight.get(key, 0.0) + weight
            lines.setdefault(key, int(leaf.get("line") or 0))
    ranked = sorted(self_weight.items(), key=lambda item: item[1], reverse=True)[:top]
    top_self = [
        {
            "function": name,
            "file": _short(file),
            "line": lines[(name, file)],
            "self_samples": int(weight),
            "self_share": round(weight / total, 4) if total else 0.0,
        }
        for (name, file), weight in ranked
    ]
    return ProfileSummary(int(total), int(keygen_total), top_self, len(profiles))


def _short(file: str) -> str:
    """A path from its package root (`.../site-packages/grpc/x.py` -> `grpc/x.py`)."""
    for marker in ("site-packages/", "/lib/python3"):
        if marker in file:
            tail = file.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker.startswith("/lib") and "/" in tail else tail
    if "/kcp/" in file:
        return "kcp/" + file.split("/kcp/", 1)[1]
    return file
