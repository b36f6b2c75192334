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
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
