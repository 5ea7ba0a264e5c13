"""`python -m needlecast.cli`: the same as the `needlecast` command."""

from needlecast.cli import main

main()
