"""The priority the clinician ordered, read from the image's request attributes."""

from __future__ import annotations

from pydicom import Dataset

from common import Priority

# Requested Procedure Priority (0040,1003): STAT, HIGH, ROUTINE, MEDIUM, LOW.
# Study Priority ID (0032,000C, retired but still sent): free text, commonly HIGH/MED/LOW.
_MAP = {"STAT": Priority.STAT, "HIGH": Priority.STAT, "MEDIUM": Priority.URGENT, "MED": Priority.URGENT}


def ordered_priority(ds: Dataset) -> Priority:
    """The most urgent priority any request attribute of ``ds`` names (ROUTINE when none)."""
    values = [ds.get("RequestedProcedurePriority"), ds.get("StudyPriorityID")]
    for item in ds.get("RequestAttributesSequence") or []:
        values.append(item.get("RequestedProcedurePriority"))
    found = [_MAP.get(str(v).strip().upper(), Priority.ROUTINE) for v in values if v]
    return Priority.most_urgent(*found)
