"""`python -m kcp` is the `kcp` command."""

from kcp.cli import main

raise SystemExit(main())
