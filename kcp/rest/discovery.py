"""Where the API server serves a kind of another provider, found by API discovery."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kcp.rest.errors import ApiError
from kcp.rest.resource import Resource

if TYPE_CHECKING:
    from kcp.rest.client import Kube

__all__ = ["discover"]


def discover(kube: Kube, api_group: str, kind: str) -> Resource:
    """The served version (preferred first) and plural of `kind` in `api_group`.

    Raises `LookupError` naming the group and kind when the API server serves no such kind.
    """
    try:
        group = kube.request("GET", f"/apis/{api_group}")
    except ApiError as error:
        if error.not_found:
            raise LookupError(
                f"the API server serves no API group {api_group!r} (is the provider's CRD "
                "installed?)"
            ) from None
        raise
    preferred = str((group.get("preferredVersion") or {}).get("version") or "")
    versions = [str(v.get("version")) for v in group.get("versions") or [] if v.get("version")]
    ordered = [preferred, *[v for v in versions if v != preferred]] if preferred else versions
    for version in ordered:
        listing = kube.request("GET", f"/apis/{api_group}/{version}")
        for entry in listing.get("resources") or []:
            if entry.get("kind") == kind and "/" not in str(entry.get("name", "")):
                return Resource(
                    api_group,
                    version,
                    kind,
                    str(entry["name"]),
                    namespaced=bool(entry.get("namespaced", True)),
                )
    raise LookupError(f"the API server serves no kind {kind} in API group {api_group}")
