"""`python scheduler.py`: run the needlecast scheduler for the workspace in this folder.

The same as `needlecast scheduler`; kept as a file so process managers can point at it directly.
"""

from needlecast.cli import main

if __name__ == "__main__":
    import sys

    sys.argv = [sys.argv[0], "scheduler", *sys.argv[1:]]
    main()
