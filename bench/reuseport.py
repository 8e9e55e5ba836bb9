"""trioproxy ``--workers N`` with a ``SO_REUSEPORT`` socket per worker instead of one
inherited socket: the alternative ``run.py`` measures against the default.

Run: ``python bench/reuseport.py <trioproxy arguments>`` (with ``--workers`` of 2 or more).
"""

from __future__ import annotations

import os
import sys

from trioproxy.cli import configure_logging, load_settings
from trioproxy.workers.supervisor import supervise


def main() -> int:
    """Parse the arguments as trioproxy does, then supervise with SO_REUSEPORT sockets."""
    settings = load_settings(sys.argv[1:], os.environ)
    configure_logging(settings.log_level)
    return supervise(settings, sharing="reuseport")


if __name__ == "__main__":
    sys.exit(main())
