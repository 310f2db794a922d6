"""`python -m xentcli` runs the same command-line app as `xent`."""

from xentcli.entry import main

main()
