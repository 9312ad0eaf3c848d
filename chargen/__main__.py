"""`python -m chargen` runs the command-line interface."""

from chargen.cli import main

main()
