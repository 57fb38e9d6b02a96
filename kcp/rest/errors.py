"""What a request to the API server raises: an error status, or no answer at all."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ApiError", "Unreachable", "error_from_body"]


class ApiError(Exception):
    """The API server answered with an error status (HTTP, or an ERROR watch event)."""

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".rstrip(": "))
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_status(cls, status_obj: Mapping[str, Any], default_code: int = 500) -> ApiError:
        """From a `Status` object (the body of an error response or ERROR event)."""
        code = status_obj.get("code")
        return cls(
            int(code) if isinstance(code, int) else default_code,
            str(status_obj.get("reason") or ""),
            str(status_obj.get("message") or ""),
        )

    @property
    def gone(self) -> bool:
        """410: the resource version asked for is compacted away; a re-list is needed."""
        return self.status == 410

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: a write lost a race (or the name is taken): re-read and retry."""
        return self.status == 409


class Unreachable(OSError):
    """The API server could not be reached or the connection broke (no HTTP answer)."""


def error_from_body(status: int, reason: str, body: bytes) -> ApiError:
    """The error of a non-2xx answer: its `Status` body's reason and message when it has one."""
    try:
        decoded = json.loads(body) if body else {}
    except ValueError:
        return ApiError(status, reason, body[:200].decode("utf-8", "replace"))
    if isinstance(decoded, dict):
        return ApiError(
            status, str(decoded.get("reason") or reason), str(decoded.get("message") or "")
        )
    return ApiError(status, reason)
