"""``python -m cdc``: the same command line as the ``cdc`` console script."""

from cdc.cli import main

main()
