"""Where the daemon keeps its data, said at start-up, so a daemon started from another folder
does not silently open an empty new worklist.

The data folder defaults to ``radtriage-data`` relative to the current directory, and so does
the SQLite database inside it: started from elsewhere, the same command finds no data there
and makes a new, empty worklist. Each process logs the absolute folder and the database (its
URL with any password masked) and warns when a relative folder is about to be created or
holds no database yet.
"""

from __future__ import annotations

import logging
from pathlib import Path

from radtriage.settings import Settings, mask_url

SQLITE_NAME = "radtriage.sqlite3"


def log_locations(settings: Settings, log: logging.Logger) -> None:
    """Log the absolute data folder and the database; warn when a relative folder looks new.

    Call before the folder is created: whether it existed is what tells a new worklist.
    """
    folder = settings.data_dir.resolve()
    log.info("data folder %s; database %s", folder, mask_url(settings.effective_database_url))
    if settings.data_dir.is_absolute():
        return
    where = f"relative to the current directory {Path.cwd()}"
    if not folder.exists():
        log.warning("data folder %s (%s) does not exist yet: a new, empty one is created there. If the worklist "
                    "lives elsewhere, start from that folder or set RADTRIAGE_DATA_DIR to its absolute path.",
                    folder, where)
    elif settings.database_url is None and not (folder / SQLITE_NAME).exists():
        log.warning("data folder %s (%s) holds no database yet: a new, empty worklist is created there. If the "
                    "worklist lives elsewhere, set RADTRIAGE_DATA_DIR to its absolute path.", folder, where)
