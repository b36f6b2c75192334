"""Logging set-up that keeps patient data out of the logs.

pynetdicom's and pydicom's own messages quote element values and UIDs, so they are held
to WARNING and ERROR, and pydicom's UserWarnings (which repeat those values) are dropped.
"""

from __future__ import annotations

import logging
import warnings


def configure(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # Its UID checks warn with the value ("Non-conformant 'Affected SOP Instance UID' value ...").
    logging.getLogger("pynetdicom.utils").setLevel(logging.ERROR)
    # Importing pydicom resets its logger to WARNING: import it first, then hold it at ERROR.
    import pydicom.config  # noqa: F401

    logging.getLogger("pydicom").setLevel(logging.ERROR)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
