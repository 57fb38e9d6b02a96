"""`kcp status`: clusters as trees (Cluster → KubeadmControlPlane → Machines), as clusterctl
`describe` draws them.

Works against any management cluster: it only reads Cluster API objects.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from kcp.statusview.collect import collect
from kcp.statusview.render import render
from kcp.statusview.tree import build_tree

__all__ = ["add_arguments", "render_status", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cluster", nargs="?", help="one cluster's name (default: every cluster)")
    parser.add_argument(
        "--kubeconfig", help="kubeconfig of the management cluster (default: as kubectl)"
    )
    parser.add_argument("--context", help="kubeconfig context to use")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", help="namespace of the clusters (default: the context's)"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="clusters of every namespace"
    )
    parser.add_argument(
        "-w", "--watch", type=float, metavar="SECONDS", help="redraw every SECONDS until Ctrl-C"
    )
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")


def _client(args: argparse.Namespace) -> tuple[Any, str]:
    import kubernetes.config

    from kcp.kubeclient import kubeconfig_api_client

    config: Any = kubernetes.config
    api_client = kubeconfig_api_client(args.kubeconfig, context=args.context)
    namespace = "default"
    try:
        _, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
        chosen = active
        if args.context:
            contexts, _ = config.list_kube_config_contexts(config_file=args.kubeconfig)
            chosen = next((c for c in contexts if c.get("name") == args.context), active)
        namespace = str((chosen or {}).get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError):
        pass
    return api_client, namespace


def render_status(api_client: Any, namespace: str | None, name: str | None, *, color: bool) -> str:
    """The whole `kcp status` output for the clusters selected."""
    found = collect(api_client, namespace, name)
    if not found:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        what = f"cluster {name}" if name else "clusters"
        return f"No {what} found in {where}.\n"
    return render([build_tree(objects) for objects in found], color=color)


def run(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException

    try:
        api_client, default_namespace = _client(args)
    except (ConfigException, OSError) as error:
        print(f"kcp status: cannot load the kubeconfig: {error}", file=sys.stderr)
        return 1
    namespace = None if args.all_namespaces else (args.namespace or default_namespace)
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    try:
        while True:
            text = render_status(api_client, namespace, args.cluster, color=color)
            if args.watch:
                sys.stdout.write("\033[H\033[2J" if sys.stdout.isatty() else "\n")
            sys.stdout.write(text)
            sys.stdout.flush()
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
    except ApiException as error:
        print(f"kcp status: the API server answered {error.status} {error.reason}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"kcp status: cannot reach the API server: {error}", file=sys.stderr)
        return 1
    finally:
        api_client.close()
