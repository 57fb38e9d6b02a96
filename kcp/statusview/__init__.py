"""`kcp status`: a `clusterctl describe`-like view of clusters, usable against any management
cluster. Imports only `kcp.api` and the kubernetes client."""

from kcp.statusview.collect import collect
from kcp.statusview.render import render
from kcp.statusview.tree import ClusterObjects, Row, build_tree

__all__ = ["ClusterObjects", "Row", "build_tree", "collect", "render"]
