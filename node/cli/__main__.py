"""`python -m node.cli ...`: the same as `provledger ...`."""

from node.cli import main

main()
