"""``python -m radtriage`` is the ``radtriage`` command."""

from radtriage.cli import main

if __name__ == "__main__":  # not when a spawned helper process (e.g. backfill's intake) imports it
    main()
