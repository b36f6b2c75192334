"""MedGemma drafts on the real daemon: urgency order, UNVERIFIED SR back to a PACS that may be down."""

from __future__ import annotations

import re
import threading
import time

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import Comprehensive3DSRStorage

from tests.e2e.daemon import Daemon, c_store, free_port, sqlite_events_in_order
from tests.factories import radiograph
from tests.unit.test_sr import dciodvfy_errors

pytestmark = pytest.mark.e2e

SUCCESS = 0x0000


class RecordingPacs:
    """A storage SCP that records the SRs it receives; it can be stopped and started."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received = []
        self._lock = threading.Lock()
        self._server = None

    def _store(self, event):
        with self._lock:
            self.received.append(event.dataset)
        return 0x0000

    def start(self) -> None:
        ae = AE(ae_title="PACS")
        ae.add_supported_context(Comprehensive3DSRStorage)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def stop(self) -> None:
        self._server.shutdown()


def drafts_env(cxr_foundation_dir, medgemma_dir, **extra):
    return {
        "RADTRIAGE_CXR_FOUNDATION_DIR": str(cxr_foundation_dir),
        "RADTRIAGE_MEDGEMMA_MODEL": str(medgemma_dir),
        "RADTRIAGE_MEDGEMMA_MAX_NEW_TOKENS": "48",
        **extra,
    }


ROUTINE = 30


def test_stat_draft_goes_before_waiting_routine_drafts(tmp_path, cxr_foundation_dir, medgemma_dir):
    # Drafts long enough, and enough of them, that routine ones are still waiting when the
    # STAT study has been triaged (the stand-in drafts in milliseconds at the usual length).
    env = drafts_env(cxr_foundation_dir, medgemma_dir, RADTRIAGE_DRAFT_BATCH="1",
                     RADTRIAGE_MEDGEMMA_MAX_NEW_TOKENS="192")
    with Daemon(tmp_path, **env) as daemon:
        assert daemon.health()["components"]["drafts"]["status"] == "ok"
        routine = [radiograph(seed=i, priority="LOW") for i in range(ROUTINE)]
        assert c_store(daemon.dicom_port, routine) == [SUCCESS] * ROUTINE
        daemon.wait_for(lambda: any(i["draft_status"] == "drafted" for i in daemon.worklist()), 120,
                        "the first routine draft")
        stat = radiograph(seed=99, priority="STAT")
        assert c_store(daemon.dicom_port, [stat]) == [SUCCESS]

        def all_drafted():
            items = daemon.worklist()
            return len(items) == ROUTINE + 1 and all(i["draft_status"] == "drafted" for i in items)

        daemon.wait_for(all_drafted, 300, "every draft")
        order = sqlite_events_in_order(daemon, ("triaged", "drafting"))
        stat_uid = str(stat.StudyInstanceUID)
        stat_queued = order.index((stat_uid, "triaged"))
        stat_started = order.index((stat_uid, "drafting"))
        waiting = [uid for uid, stage in order[stat_queued:] if stage == "drafting" and uid != stat_uid]
        assert waiting, "no routine draft was still waiting when the STAT study arrived"
        print(f"{len(waiting)} of {ROUTINE} routine drafts were waiting when the STAT study was triaged")
        started_after = {uid for uid, stage in order[stat_started:] if stage == "drafting"}
        # Every routine draft still waiting when the STAT draft was queued started after it
        # (one may have been claimed in the instant between the two).
        assert len(set(waiting) - started_after) <= 1, order

        item = next(i for i in daemon.worklist() if i["study_instance_uid"] == stat_uid)
        assert item["priority"] == "STAT"
        assert "UNVERIFIED" in item["draft_preview"]["disclaimer"].upper()
        detail = daemon.get(f"/api/studies/{stat_uid}")
        assert "UNVERIFIED" in detail["draft"]["disclaimer"].upper()


def test_sr_reaches_pacs_once_after_destination_comes_back(tmp_path, cxr_foundation_dir, medgemma_dir):
    pacs = RecordingPacs(free_port())
    env = drafts_env(cxr_foundation_dir, medgemma_dir, RADTRIAGE_SR_DESTINATION=f"127.0.0.1:{pacs.port}",
                     RADTRIAGE_SR_DESTINATION_AE_TITLE="PACS", RADTRIAGE_SR_RETRY_MAX_SECONDS="4")
    with Daemon(tmp_path, **env) as daemon:
        first = [radiograph(seed=i) for i in range(2)]
        assert c_store(daemon.dicom_port, first) == [SUCCESS, SUCCESS]
        daemon.wait_for(lambda: sum(i["draft_status"] == "drafted" for i in daemon.worklist()) == 2, 120, "drafts")
        retries = re.compile(r'^radtriage_sr_exports_total\{result="retry"\} (\S+)$', re.MULTILINE)
        daemon.wait_for(lambda: float(retries.search(daemon.get("/metrics")).group(1)) > 0, 30,
                        "a failed export attempt while the PACS is down")

        # The destination being down delays nothing else: a new study is triaged at once.
        late = radiograph(seed=7)
        started = time.monotonic()
        assert c_store(daemon.dicom_port, [late]) == [SUCCESS]
        daemon.wait_for(lambda: any(i["study_instance_uid"] == str(late.StudyInstanceUID)
                                    and i["status"] == "triaged" for i in daemon.worklist()), 60, "triage")
        assert time.monotonic() - started < 30

        pacs.start()
        try:
            daemon.wait_for(lambda: len({str(ds.SOPInstanceUID) for ds in pacs.received}) == 3, 120,
                            "three SRs at the PACS")
            time.sleep(3)  # any duplicate send would arrive now
        finally:
            pacs.stop()
    assert len(pacs.received) == 3, "an SR was sent twice"
    for sr in pacs.received:
        assert sr.VerificationFlag == "UNVERIFIED"
        referenced = {str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                      for series in sr.CurrentRequestedProcedureEvidenceSequence
                      for item in series.ReferencedSeriesSequence}
        source = next(ds for ds in first + [late] if ds.StudyInstanceUID == sr.StudyInstanceUID)
        assert referenced == {str(source.SOPInstanceUID)}
        # What the PACS stored is a valid SR by an independent checker, not only by our builder.
        assert dciodvfy_errors(as_part10(sr, tmp_path / f"{sr.SOPInstanceUID}.dcm")) == []


def as_part10(ds, path):
    """The received dataset as a file, in the explicit VR syntax the checker reads."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path
