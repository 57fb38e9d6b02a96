"""The `kcp` command line: one sub-command per job, each defined next to its code."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# Sub-command name -> module defining `add_arguments(parser)` and `run(args) -> int`.
# Modules are imported only when their command runs, so `kcp version` stays fast
# and a command's heavy imports never slow another.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("kcp.bench.cli", "run benchmarks"),
    "dev": ("kcp.dev", "run the local demo: management cluster, simulated machines, controller"),
    "envtest": ("kcp.testing.envtest_cmd", "run a local management control plane"),
    "status": ("kcp.statusview.cli", "show clusters as a tree"),
    "sim": ("kcp.sim.cli", "run the local infrastructure provider"),
    "run": ("kcp.controlplane.cli", "run the controller"),
    "version": ("kcp.cli", "print the version"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`kcp version` takes no arguments."""


def run(args: argparse.Namespace) -> int:
    from kcp import __version__

    print(__version__)
    return 0


def _load(
    module_name: str,
) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    module = importlib.import_module(module_name)
    return module.add_arguments, module.run


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kcp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text)
        if name == chosen:
            add, _ = _load(module_name)
            add(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(arguments).parse_args(arguments)
    _, command = _load(COMMANDS[args.command][0])
    return command(args)
