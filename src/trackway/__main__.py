"""`python -m trackway`: the `trackway` command (serve starts its SQLite writer this way)."""

from trackway.cli import main

main()
