"""``python -m trioproxy``: the same entry point as the ``trioproxy`` command."""

import sys

from .cli import main

sys.exit(main())
