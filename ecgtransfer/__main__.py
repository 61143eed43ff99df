"""``python -m ecgtransfer`` is the ``ecgtransfer`` command."""

from ecgtransfer.cli import main

raise SystemExit(main())
