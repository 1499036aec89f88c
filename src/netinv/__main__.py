"""``python -m netinv`` = the ``netinv`` command."""

from .cli.app import main

main()
