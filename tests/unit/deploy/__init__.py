"""Deployment artefacts checked without a cluster: Dockerfile, Tilt restart supervisor."""
