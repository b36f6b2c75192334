"""Completeness end to end: a study with its views completes in well under the quiet timer, and an
instance arriving after completion re-triages it: one worklist row, the newest result."""

from __future__ import annotations

import time

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.e2e.daemon import Daemon, sqlite_events_in_order
from tests.e2e.test_push_to_worklist import expected_assessments

pytestmark = pytest.mark.e2e

QUIET_SECONDS = 60  # long: only the view rule can complete these studies during the test


def chest_pa(samples, folder, study_uid: str, name: str, flip: bool) -> str:
    """A real PA chest radiograph as a new instance of ``study_uid`` that announces one instance."""
    ds = pydicom.dcmread(samples / "derived" / "CR-MONO1-10-chest_explicitLE_withmeta.dcm")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.NumberOfStudyRelatedInstances = 1
    if flip:  # different pixels: a different score
        ds.PixelData = np.ascontiguousarray(np.flipud(ds.pixel_array)).tobytes()
    path = folder / name
    ds.save_as(path)
    return path


def row(daemon: Daemon, study_uid: str) -> dict | None:
    items = [i for i in daemon.worklist() if i["study_instance_uid"] == study_uid]
    assert len(items) <= 1, "one worklist row per study"
    return items[0] if items else None


def wait_triaged(daemon: Daemon, study_uid: str, revision: int, timeout: float = 60) -> dict:
    def done():
        item = row(daemon, study_uid)
        return item if item and item["revision"] == revision and item["status"] == "triaged" else None

    return daemon.wait_for(done, timeout, f"revision {revision} triaged")


def test_late_instance_retriages_with_the_newest_score(tmp_path, samples, dcmtk, cxr_foundation_dir):
    study = generate_uid()
    first = chest_pa(samples, tmp_path, study, "first.dcm", flip=False)
    late = chest_pa(samples, tmp_path, study, "late.dcm", flip=True)
    env = {"RADTRIAGE_CXR_FOUNDATION_DIR": str(cxr_foundation_dir), "RADTRIAGE_STABLE_SECONDS": str(QUIET_SECONDS)}
    with Daemon(tmp_path, **env) as daemon:
        started = time.monotonic()
        daemon.dcmsend(first)
        one = wait_triaged(daemon, study, 1)
        assert time.monotonic() - started < QUIET_SECONDS / 2, "completed by its views, not the quiet timer"
        assert one["urgency_score"] == pytest.approx(expected_assessments([first], cxr_foundation_dir)[study].urgency_score,
                                                     abs=1e-6)

        daemon.dcmsend(late)
        two = wait_triaged(daemon, study, 2)
        assert two["instances"] == 2
        want = expected_assessments([first, late], cxr_foundation_dir)[study]
        assert two["urgency_score"] == pytest.approx(want.urgency_score, abs=1e-6)
        assert two["priority"] == want.priority.value
        stages = [stage for uid, stage in sqlite_events_in_order(daemon, ("complete", "reopened")) if uid == study]
        assert stages == ["complete", "reopened", "complete"]
