"""Logging set-up that keeps patient data out of the logs, as text or as JSON lines.

pynetdicom's and pydicom's own messages quote element values and UIDs, so they are held
to WARNING and ERROR, and pydicom's UserWarnings (which repeat those values) are dropped.

With ``log_format = "json"`` each line is one JSON object (time, level, logger, process,
message) and, where the line is about studies, ``study_id`` (or ``study_ids``): the internal
id, the same in every process, so one study can be followed from the listener to its worker.
"""

from __future__ import annotations

import logging
import re
import warnings

from common.log_context import CURRENT_STUDY

# The code writes a study's internal id as "study #12" or "3 study(ies) complete: #12, #13".
_STUDY_REFERENCE = re.compile(r"\bstud(?:y|ies|y\(ies\))\b")
_ID = re.compile(r"#(\d+)")
_FIRST_INT = re.compile(r"\d+")
_TEXT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


class StudyIds(logging.Filter):
    """Sets ``study_id`` (or ``study_ids``) on each record about studies: an ``extra`` value,
    the study the code is working on (``common.log_context``), or the ids its message names."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "study_id", None) is not None or getattr(record, "study_ids", None):
            return True
        current = CURRENT_STUDY.get()
        if current is not None:
            record.study_id = current
            return True
        task = getattr(record, "data", None)  # Celery's task lines: args are (study id, revision)
        if isinstance(task, dict) and str(task.get("name", "")).startswith("radtriage.") and task.get("args"):
            found = _FIRST_INT.search(str(task["args"]))
            if found:
                record.study_id = int(found.group())
            return True
        message = record.getMessage()
        if _STUDY_REFERENCE.search(message):
            ids = [int(found) for found in _ID.findall(message)]
            if len(ids) == 1:
                record.study_id = ids[0]
            elif ids:
                record.study_ids = ids
        return True


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                             rename_fields={"asctime": "time", "levelname": "level", "name": "logger"})
    return logging.Formatter(_TEXT)


def configure(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(StudyIds())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # Its UID checks warn with the value ("Non-conformant 'Affected SOP Instance UID' value ...").
    logging.getLogger("pynetdicom.utils").setLevel(logging.ERROR)
    # Importing pydicom resets its logger to WARNING: import it first, then hold it at ERROR.
    import pydicom.config  # noqa: F401

    logging.getLogger("pydicom").setLevel(logging.ERROR)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
