"""Errors a user can cause with bad certificate or kubeconfig material.

Both derive from ``ValueError`` so callers that only know "bad input" still catch
them. Messages say what is wrong and what to do about it, and never contain key
material, so they are safe to put in a condition, an Event or a log line.
"""

from __future__ import annotations

__all__ = ["CertificateError", "KubeconfigError"]


class CertificateError(ValueError):
    """Certificate or key material is malformed, mismatched, expired or not a CA."""


class KubeconfigError(ValueError):
    """A kubeconfig document cannot be used (not YAML, incomplete, bad base64, ...)."""
