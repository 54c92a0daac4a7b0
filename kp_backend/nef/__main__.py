"""``python -m kp_backend.nef MODEL.nef [--json]``."""

import sys

from kp_backend.nef.cli import main

sys.exit(main())
