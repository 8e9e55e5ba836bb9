#!/usr/bin/env python3
"""Launch the terminal view of a trioproxy's activity from a checkout.

``python scripts/inspect_activity.py [URL ...] [--watch | --raw | --cancel INSTANCE SESSION]
[--interval S] [--recent K] [--admin-key-env VAR]`` is the same tool as the installed
``trioproxy-inspect``; the logic lives in
:mod:`trioproxy.inspect.cli`. The checkout this script sits in comes first on the
import path, so it runs that checkout's code, installed or not (its dependencies must
be installed).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trioproxy.inspect.cli import main

if __name__ == "__main__":
    sys.exit(main())
