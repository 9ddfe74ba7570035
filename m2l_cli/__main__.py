"""`python -m m2l_cli` runs the `m2l` command."""

from .cli import main

main()
