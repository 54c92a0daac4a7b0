"""``python -m kp_runtime.compare``: the ``kp-runtime compare`` command, standalone."""

from kp_runtime.compare.cli import main

raise SystemExit(main())
