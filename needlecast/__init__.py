"""needlecast: a clinic's educational content as segmented, scheduled email campaigns."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("needlecast")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
