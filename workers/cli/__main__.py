"""``python -m workers.cli``: the ``collector`` command."""

from workers.cli.main import main

main()
