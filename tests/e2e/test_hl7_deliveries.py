"""HL7 deliveries from the real daemon: a study pushed over DICOM reaches python-hl7's MLLP server
as OMI (waiting-time escalation) and ORU (the result), and a daemon killed with SIGKILL between
sending and the acknowledgement loses nothing and sends nothing twice with different content."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon, c_store
from tests.factories import radiograph
from tests.integration.mllp_receiver import MllpReceiver, field, validated

pytestmark = pytest.mark.e2e

SUCCESS = 0x0000


def deliveries(data_dir: Path) -> list[tuple[str, str, str]]:
    """(content, status, control id) of every delivery row, in order."""
    with sqlite3.connect(data_dir / "radtriage.sqlite3") as db:
        return db.execute("SELECT content, status, control_id FROM deliveries ORDER BY id").fetchall()


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started, as a power cut would."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in (children.read_text().split() if children.exists() else []):
        kill_tree(int(child))
    os.kill(pid, signal.SIGKILL)


def test_killed_between_send_and_ack_every_delivery_is_made_none_changed(tmp_path, cxr_foundation_dir) -> None:
    ris = MllpReceiver([None])  # the first message is never answered: the daemon dies waiting
    destination = {"name": "ris", "kind": "hl7v2", "host": "127.0.0.1", "port": ris.port,
                   "receives": ["priority", "escalation", "result"], "timeout_seconds": 60,
                   "priority_map": {"STAT": "S", "URGENT": "A", "ROUTINE": "R"},
                   "retry": {"backoff_first_seconds": 0.5, "backoff_max_seconds": 1}}
    env = {"RADTRIAGE_CXR_FOUNDATION_DIR": str(cxr_foundation_dir), "RADTRIAGE_DESTINATIONS": json.dumps([destination]),
           # Waiting escalates at once (ROUTINE → URGENT → STAT): two procedure updates, whatever triage says.
           "RADTRIAGE_ESCALATE_ROUTINE_AFTER_MINUTES": "0.02", "RADTRIAGE_ESCALATE_URGENT_AFTER_MINUTES": "0.02",
           "RADTRIAGE_ESCALATION_POLL_SECONDS": "0.5"}
    ds = radiograph(seed=21)
    try:
        with Daemon(tmp_path, **env) as daemon:
            assert c_store(daemon.dicom_port, [ds]) == [SUCCESS]
            daemon.wait_for(lambda: ris.received, 60, "the first HL7 message at the RIS")
            daemon.wait_for(lambda: any(c == "result" for c, _s, _i in deliveries(daemon.data_dir)), 60,
                            "the triage result to be queued")
            kill_tree(daemon.proc.pid)
            daemon.proc.wait(10)
        held = field(ris.received[0], "MSH", 10)
        ris.release()  # from now on every message is acknowledged

        with Daemon(tmp_path, **env) as daemon:
            daemon.wait_for(lambda: len(deliveries(daemon.data_dir)) >= 3
                            and {s for _c, s, _i in deliveries(daemon.data_dir)} == {"sent"}, 90,
                            "every delivery acknowledged after the restart")
            time.sleep(1.5)  # a second send, if any, would arrive now
            rows = deliveries(daemon.data_dir)
            metrics = daemon.get("/metrics")
    finally:
        ris.close()

    copies: dict[str, list[str]] = defaultdict(list)
    for message in ris.received:
        copies[field(message, "MSH", 10)].append(message)
    assert set(copies) == {control_id for _c, _s, control_id in rows}  # every delivery made, nothing else
    assert len(copies[held]) >= 2  # the unacknowledged one went again after the restart ...
    for control_id, sent in copies.items():
        assert all(copy == sent[0] for copy in sent), f"{control_id} sent twice with different content"
    for message in (copies[control_id][0] for _c, _s, control_id in rows):
        validated(message)
        assert field(message, "OBR", 18) == ds.AccessionNumber
    kinds = [field(copies[control_id][0], "MSH", 9).split("^")[0] for _c, _s, control_id in rows]
    assert "OMI" in kinds and "ORU" in kinds
    updates = [field(copies[control_id][0], "TQ1", 9) for (content, _s, control_id) in rows if content != "result"]
    assert updates[-2:] == ["A", "S"]  # one update per escalation step, in order
    assert 'radtriage_deliveries_sent_total{destination="ris"}' in metrics
