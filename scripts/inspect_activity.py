#!/usr/bin/env python3
"""Launch the terminal view of a trioproxy's activity from a checkout.

``python scripts/inspect_activity.py [URL] [--watch] [--interval S] [--raw]`` is the same
tool as the installed ``trioproxy-inspect``; the logic lives in
:mod:`trioproxy.activity.inspect_cli`, so trioproxy must be installed
(``pip install -e .``).
"""

import sys

from trioproxy.activity.inspect_cli import main

if __name__ == "__main__":
    sys.exit(main())
