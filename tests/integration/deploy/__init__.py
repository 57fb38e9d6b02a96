"""Deployment artefacts: config/ kustomize tree, Tiltfile, RBAC against a real API server."""
