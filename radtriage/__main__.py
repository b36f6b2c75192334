"""``python -m radtriage`` is the ``radtriage`` command."""

from radtriage.cli import main

main()
