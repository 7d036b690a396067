"""`python -m choreo` is the `choreo` command."""

from choreo.cli import main

main()
