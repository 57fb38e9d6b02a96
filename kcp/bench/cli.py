"""``kcp bench <suite>``: dispatch to one benchmark suite.

A suite is a module with ``add_arguments(parser)`` and ``run(args) -> int``;
adding one is one line in ``SUITES``. Suite modules keep heavy imports inside
their functions, since every suite's arguments are declared when ``kcp bench``
parses its command line.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["SUITES", "add_arguments", "run"]

SUITES: dict[str, tuple[str, str]] = {
    "tracker": ("kcp.bench.tracker", "etcd client keys: the cached tracker vs a key per client"),
    "memory": ("kcp.bench.memory", "controller peak RSS with big Secrets: metadata vs full cache"),
    "scale": ("kcp.bench.scale", "one controller, N/10 then N clusters: resync, CPU, RSS, threads"),
    "profile": ("kcp.bench.profile", "py-spy profile at 100 clusters: key generation share"),
    "versus": (
        "kcp.bench.versus",
        "kcp vs Cluster API's KCP controller, each on a fresh identical fleet: 10 clusters of "
        "real machines, then 100 and 1000 on the cheap shared fleet",
    ),
    "all": (
        "kcp.bench.combined",
        "every scenario (versus not with --quick): one JSON (--json) and one plot (--plot)",
    ),
}
"""Suite name -> (module, one-line help)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    suites = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name, (module_name, help_text) in SUITES.items():
        suite_parser = suites.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name).add_arguments(suite_parser)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(SUITES[args.suite][0])
    result: int = module.run(args)
    return result
