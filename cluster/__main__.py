"""``python -m cluster`` is the ``kraftpy`` command."""

from cluster.cli import main

raise SystemExit(main())
