"""A PACS push reaches the worklist: DCMTK sends real chest radiographs to ``radtriage serve``."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.uid import generate_uid

from common import Priority
from tests.e2e.daemon import Daemon, as_sent_by_dcmtk

pytestmark = pytest.mark.e2e

NO_META = "CR-MONO1-10-chest.dcm"  # a file without meta header: only storescu sends it
# A dog's lateral thorax (its header says CANINE): on the worklist, but as no chest radiograph.
VETERINARY = "highdicom_dx_image.dcm"


def chest_files(samples):
    return sorted((samples / "chest").glob("*.dcm"))


def push_chest(daemon: Daemon, samples) -> list:
    files = chest_files(samples)
    daemon.dcmsend(*[f for f in files if f.name != NO_META])
    daemon.storescu(samples / "chest" / NO_META)
    return files


def expected_assessments(files, model_dir):
    """What the stand-in model says about each study, computed here with the public scoring code."""
    from dicom.order import ordered_priority
    from dicom.pixels import to_model_png
    from scoring.backends import EmbedderConfig
    from scoring.heads import highest
    from scoring.triage import Triager
    from scoring.urgency import assess, load_policy

    policy = load_policy()
    triager = Triager.load(EmbedderConfig(cxr_foundation_dir=model_dir), policy)
    per_study: dict[str, list] = {}
    orders: dict[str, Priority] = {}
    for path in files:
        if path.name == VETERINARY:
            continue
        ds = pydicom.dcmread(path, force=True)
        _, scores = triager.score_png(to_model_png(ds))
        per_study.setdefault(str(ds.StudyInstanceUID), []).append(scores)
        orders[str(ds.StudyInstanceUID)] = ordered_priority(ds)
    return {uid: assess(highest(scores), orders[uid], policy) for uid, scores in per_study.items()}


def assert_worklist_order(items):
    keys = [(-Priority(i["priority"]).rank, -(i["urgency_score"] if i["urgency_score"] is not None else -1))
            for i in items]
    assert keys == sorted(keys), [(i["priority"], i["urgency_score"]) for i in items]


def assert_stored_byte_equal(daemon: Daemon, files) -> None:
    """Every file is stored exactly as it came over the wire, compressed ones never transcoded."""
    stored = daemon.stored()
    assert len(stored) == len(files)
    for path in files:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        syntax, data = stored[str(ds.SOPInstanceUID)]
        source_syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        if source_syntax and source_syntax.is_compressed:
            assert syntax == source_syntax, f"{path.name} was transcoded"
        assert data == as_sent_by_dcmtk(path, syntax, daemon.folder), f"{path.name} differs from what was sent"


def check_scored_worklist(daemon: Daemon, files, model_dir) -> None:
    expected = expected_assessments(files, model_dir)
    animal = str(pydicom.dcmread(files[[f.name for f in files].index(VETERINARY)]).StudyInstanceUID)
    items = daemon.wait_triaged(len(expected) + 1)
    assert {i["study_instance_uid"] for i in items} == set(expected) | {animal}
    for item in items:
        if item["study_instance_uid"] == animal:
            assert item["status"] == "triaged" and item["urgency_score"] is None
            assert item["reasons"][0] == "not a chest radiograph (body part THORAX, view not recorded)"
            continue
        want = expected[item["study_instance_uid"]]
        assert item["status"] == "triaged", item
        assert item["priority"] == want.priority.value
        assert item["urgency_score"] == pytest.approx(want.urgency_score, abs=1e-6)
        assert item["reasons"][: len(want.reasons)] == list(want.reasons)
        assert item["received_at"]
    assert_worklist_order(items)
    assert_stored_byte_equal(daemon, files)
    return items


def test_embedded_default_push_reaches_worklist_with_model_scores(tmp_path, samples, dcmtk, cxr_foundation_dir):
    with Daemon(tmp_path, RADTRIAGE_CXR_FOUNDATION_DIR=str(cxr_foundation_dir)) as daemon:
        assert daemon.health()["components"]["triage_model"]["status"] == "ok"
        files = push_chest(daemon, samples)
        items = check_scored_worklist(daemon, files, cxr_foundation_dir)
        metrics = daemon.get("/metrics")
        assert f'radtriage_triage_tasks_total{{outcome="triaged"}} {float(len(items))}' in metrics
        assert f'radtriage_dicom_store_requests_total{{result="stored",status="0x0000"}} {float(len(files))}' in metrics


def test_redis_and_postgresql(tmp_path, samples, dcmtk, cxr_foundation_dir, postgres_url, redis_prefix):
    redis_url, prefix = redis_prefix
    env = {
        "RADTRIAGE_CXR_FOUNDATION_DIR": str(cxr_foundation_dir),
        "RADTRIAGE_BROKER_URL": redis_url,
        "RADTRIAGE_BROKER_KEY_PREFIX": prefix,
        "RADTRIAGE_DATABASE_URL": postgres_url,
    }
    with Daemon(tmp_path, **env) as daemon:
        health = daemon.health()["components"]
        assert health["database"]["dialect"] == "postgresql"
        assert health["queue"]["broker"] == "redis"
        files = push_chest(daemon, samples)
        check_scored_worklist(daemon, files, cxr_foundation_dir)
    import redis

    assert list(redis.Redis.from_url(redis_url).scan_iter(match=f"{prefix}*")), "queue did not use its key prefix"


def test_without_weights_orders_by_ordered_priority(tmp_path, samples, dcmtk):
    # Copies of a real chest image as three studies ordered LOW, STAT and MEDIUM.
    source = samples / "chest" / "RG1_JLSN.dcm"
    sent = []
    for order in ("LOW", "STAT", "MEDIUM"):
        ds = pydicom.dcmread(source)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.RequestedProcedurePriority = order
        path = tmp_path / f"{order}.dcm"
        ds.save_as(path)
        sent.append(path)

    with Daemon(tmp_path) as daemon:
        health = daemon.health()
        assert health["status"] == "degraded"
        assert health["components"]["drafts"]["status"] == "disabled"
        assert str(tmp_path / "no-models") in health["components"]["triage_model"]["path"]
        daemon.dcmsend(*sent)
        items = daemon.wait_triaged(3)
        assert [i["priority"] for i in items] == ["STAT", "URGENT", "ROUTINE"]
        assert all(i["urgency_score"] is None for i in items)
        assert all(i["reasons"][0].startswith("AI unavailable") for i in items)
        assert_stored_byte_equal(daemon, sent)
        assert daemon.log().count("huggingface-cli download google/cxr-foundation") == 1  # said once


def test_daemon_runs_without_machine_learning_libraries(tmp_path, samples, dcmtk, cxr_foundation_dir):
    """`pip install -e .` without the ml extra: weights present, libraries absent → order-based triage."""
    import os
    from pathlib import Path

    blocker = Path(__file__).with_name("no_ml")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]),
           "RADTRIAGE_CXR_FOUNDATION_DIR": str(cxr_foundation_dir)}
    with Daemon(tmp_path, **env) as daemon:
        health = daemon.health()
        assert health["components"]["drafts"]["status"] == "disabled"
        daemon.dcmsend(samples / "chest" / "RG1_JLSN.dcm")
        (item,) = daemon.wait_triaged(1)
        assert item["status"] == "triaged" and item["urgency_score"] is None
        assert item["reasons"][0].startswith("AI unavailable")
        assert "ModuleNotFoundError" in item["reasons"][0] or "failed to load" in item["reasons"][0]
