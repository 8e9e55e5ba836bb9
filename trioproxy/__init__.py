"""trioproxy: an LLM API proxy on Trio with exact, live activity tracking."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trioproxy")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
