"""The deployment files the deploy tests read (unit: their contents; integration: the real tools)."""

from __future__ import annotations

import json

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
ORTHANC_CONFIG = DEPLOY / "orthanc" / "orthanc.json"


def orthanc_config() -> dict:
    """The demo PACS's configuration as Orthanc reads it."""
    # Orthanc reads JSON with // comments; the file uses whole-line comments only.
    lines = [line for line in ORTHANC_CONFIG.read_text().splitlines() if not line.lstrip().startswith("//")]
    return json.loads("\n".join(lines))
