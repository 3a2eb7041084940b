"""``python -m aquami`` is the ``aquami`` command."""

from aquami.cli import main

main()
