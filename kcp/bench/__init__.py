"""Benchmarks behind ``kcp bench <suite>``; each suite is a module with
``add_arguments(parser)`` and ``run(args) -> int`` registered in ``kcp.bench.cli.SUITES``."""
