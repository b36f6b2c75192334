"""Images that are no chest radiograph (hip, extremity, C-spine, dental panoramic, a dog's thorax,
colour multi-frame) say so on the worklist whether or not the model is loaded, and the site can
keep them off the worklist entirely."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from db.models import Study
from db.session import make_engine, make_session_factory
from tests.api_support import client
from tests.factories import radiograph, write

REPO = Path(__file__).resolve().parents[2]
NON_CHEST_SAMPLES = ("xray_nonchest/RG2_JPLY_fixed.dcm", "xray_nonchest/RG3_RLE.dcm",
                     "xray_nonchest/pydicom_dicomdir_CR1_6154_cspine_LL.dcm",
                     "xray_nonchest/CR-ModalitySequenceLUT_dental_pano.dcm",
                     "chest/highdicom_dx_image.dcm",  # a canine lateral thorax
                     "edge/pydicom_SC_rgb_rle_2frame.dcm")  # colour, two frames
CHEST_SAMPLE = "chest/RG1_J2KI.dcm"


def archive(samples: Path, folder: Path) -> tuple[list[Path], Path]:
    """The non-chest samples and two made ones (a knee; a pelvis named only in its description),
    and one chest radiograph, each its own study."""
    folder.mkdir()
    non_chest = []
    for name in NON_CHEST_SAMPLES:
        non_chest.append(folder / Path(name).name)
        shutil.copy(samples / name, non_chest[-1])
    non_chest.append(write(radiograph(seed=1, body_part="KNEE", view="LAT"), folder, "knee.dcm"))
    pelvis = radiograph(seed=2, body_part=None, view="AP")
    pelvis.SeriesDescription = "PELVIS AP"
    non_chest.append(write(pelvis, folder, "pelvis.dcm"))
    chest = folder / "chest.dcm"
    shutil.copy(samples / CHEST_SAMPLE, chest)
    return non_chest, chest


def run_backfill(data_dir: Path, model_dir: Path, folder: Path, **settings: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RADTRIAGE_")}
    env.update(RADTRIAGE_DATA_DIR=str(data_dir), RADTRIAGE_CXR_FOUNDATION_DIR=str(model_dir),
               RADTRIAGE_MEDGEMMA_MODEL=str(data_dir.parent / "no-medgemma"),
               **{f"RADTRIAGE_{key.upper()}": value for key, value in settings.items()})
    proc = subprocess.run([sys.executable, "-m", "radtriage", "backfill", str(folder)], cwd=REPO, env=env,
                          check=False, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


def expected_reason(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    part = str(ds.get("BodyPartExamined") or "").strip() or "not recorded"
    view = str(ds.get("ViewPosition") or "").strip() or "not recorded"
    return f"not a chest radiograph (body part {part}, view {view})"


@pytest.mark.parametrize("model", ["loaded", "absent"])
def test_non_chest_studies_say_so_with_or_without_the_model_and_can_be_kept_off(tmp_path, samples, model,
                                                                                cxr_foundation_dir):
    non_chest, chest = archive(samples, tmp_path / "archive")
    data_dir = tmp_path / "data"
    # Listed (the default) when the model is absent; kept off the worklist when it is loaded.
    hide = model == "loaded"
    run_backfill(data_dir, cxr_foundation_dir if model == "loaded" else tmp_path / "no-model", tmp_path / "archive",
                 **({"worklist_non_chest": "hide"} if hide else {}))

    engine = make_engine(f"sqlite:///{data_dir / 'radtriage.sqlite3'}")
    try:
        sessions = make_session_factory(engine)
        with sessions() as session:
            studies = {s.study_instance_uid: s for s in session.scalars(select(Study))}
        uid = {p.name: str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in [*non_chest, chest]}
        for path in non_chest:
            study = studies[uid[path.name]]
            assert study.status == "triaged" and study.urgency_score is None, path.name
            assert study.reasons[0] == expected_reason(path), path.name
            assert not any(r.startswith("AI unavailable") for r in study.reasons), path.name
            assert (study.read_at is not None) == hide, path.name
        control = studies[uid[chest.name]]
        assert not control.reasons[0].startswith("not a chest radiograph")
        assert control.read_at is None

        listed = {i["study_instance_uid"] for i in client(sessions).get("/api/worklist").json()["items"]}
        assert uid[chest.name] in listed
        assert {uid[p.name] for p in non_chest} & listed == (set() if hide else {uid[p.name] for p in non_chest})
    finally:
        engine.dispose()


def test_a_hidden_study_comes_back_when_a_new_image_reopens_it(sessions):
    from common import Priority
    from db.ingest import NewInstance, record_instance
    from db.models import utcnow
    from db.non_chest import hide_from_worklist
    from tests.api_support import add_study

    uid = add_study(sessions, 41, Priority.ROUTINE, received=utcnow(), ai=Priority.ROUTINE)
    with sessions() as session:
        study = session.scalar(select(Study).where(Study.study_instance_uid == uid))
        assert hide_from_worklist(session, study_id=study.id, revision=study.revision)
    api = client(sessions)
    assert api.get("/api/worklist").json()["items"] == []
    late = NewInstance(study_instance_uid=uid, series_instance_uid=f"{uid}.2", sop_instance_uid=f"{uid}.2.1",
                       sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                       ordered_priority=Priority.ROUTINE, path="objects/late.dcm", content_hash="blake3:" + "1" * 64,
                       size_bytes=1, body_part="CHEST")
    with sessions() as session:
        record_instance(session, new=late)
    assert [i["study_instance_uid"] for i in api.get("/api/worklist").json()["items"]] == [uid]
