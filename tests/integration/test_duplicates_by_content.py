"""Duplicates are decided on the dataset, not the file: the same image by every route is one
instance, triaged once; the same image in another transfer syntax is a duplicate; a changed
image is a revision, shown apart from the instances."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import RLELossless
from pynetdicom import AE
from sqlalchemy import func, select

from db.models import Event, Instance, Study
from dicom.scu import send_datasets
from tests.api_support import client
from tests.conftest import need
from tests.factories import radiograph, write
from tests.integration.listener_harness import AE_TITLE, running_listener
from tests.integration.test_backfill import backfill

RUN_TIMEOUT = 120


def study_state(sessions) -> tuple[int, int, int, str, int]:
    """(instance rows, distinct SOP instances, revision, status, reopen events) of the only study."""
    with sessions() as session:
        rows = session.scalar(select(func.count()).select_from(Instance))
        distinct = session.scalar(select(func.count(func.distinct(Instance.sop_instance_uid))))
        (study,) = session.scalars(select(Study)).all()
        reopened = session.scalar(select(func.count()).select_from(Event).where(Event.stage == "reopened"))
        return rows, distinct, study.revision, study.status, reopened


def pynetdicom_store(port: int, path: Path) -> int:
    """A C-STORE of the file by pynetdicom's own SCU (it reads the file meta for the context)."""
    ds = pydicom.dcmread(path)
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        assoc.release()
        ae.shutdown()


def test_one_image_by_every_route_is_stored_once_and_triaged_once(tmp_path, samples, dcmtk, cxr_foundation_dir):
    image = samples / "chest" / "966_fixed.dcm"
    need(image.is_file(), "chest/966_fixed.dcm among the samples")
    data_dir = tmp_path / "data"
    with running_listener(tmp_path, data_dir=data_dir,
                          database_url=f"sqlite:///{data_dir / 'radtriage.sqlite3'}") as harness:
        port = str(harness.port)
        subprocess.run(["dcmsend", "-aec", AE_TITLE, "127.0.0.1", port, str(image)], check=True,
                       capture_output=True, timeout=RUN_TIMEOUT)
        assert harness.stores == [("stored", 0)]

        # The listener has it: a backfill of the same file stores nothing and triages the study once.
        first = backfill(data_dir, cxr_foundation_dir, str(image))
        assert (first["stored"], first["already stored"], first["studies"]) == (0, 1, 1)
        assert study_state(harness.sessions) == (1, 1, 1, "triaged", 0)

        # Every other route brings the same dataset in another file meta: a duplicate, not a revision.
        subprocess.run(["storescu", "-R", "-xv", "-aec", AE_TITLE, "127.0.0.1", port, str(image)], check=True,
                       capture_output=True, timeout=RUN_TIMEOUT)
        assert pynetdicom_store(harness.port, image) == 0
        sent = subprocess.run([sys.executable, "-m", "radtriage", "send", "--to", f"127.0.0.1:{port}", str(image)],
                              check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        second = backfill(data_dir, cxr_foundation_dir, str(image))
        assert (second["stored"], second["already stored"]) == (0, 1)

        assert harness.stores == [("stored", 0)] + [("duplicate", 0)] * 3
        assert study_state(harness.sessions) == (1, 1, 1, "triaged", 0), "not stored again, not triaged again"
        assert len(harness.files()) == 1


def transcoded(original: Path, folder: Path) -> dict[str, Path]:
    """The same image as DCMTK (implicit VR) and pydicom (RLE lossless) would re-encode it."""
    implicit = folder / "implicit.dcm"
    subprocess.run(["dcmconv", "+ti", str(original), str(implicit)], check=True, capture_output=True,
                   timeout=RUN_TIMEOUT)
    ds = pydicom.dcmread(original)
    ds.compress(RLELossless, generate_instance_uid=False)  # the same SOP instance, re-encoded
    rle = folder / "rle.dcm"
    ds.save_as(rle, enforce_file_format=True)
    return {"implicit": implicit, "rle": rle}


def test_the_same_image_in_another_syntax_is_a_duplicate_and_a_changed_one_a_revision(tmp_path, sessions, dcmtk):
    need(shutil.which("dcmconv") is not None, "DCMTK dcmconv")
    folder = tmp_path / "sent"
    ds = radiograph(seed=11)
    original = write(ds, folder, "original.dcm")
    copies = transcoded(original, folder)
    assert {str(pydicom.dcmread(p).file_meta.TransferSyntaxUID) for p in copies.values()} == {
        "1.2.840.10008.1.2", str(RLELossless)}

    pixels = pydicom.dcmread(original)
    changed = pixels.pixel_array.copy()
    changed[0, 0] ^= 1  # one pixel differs
    pixels.PixelData = changed.astype(np.uint16).tobytes()
    one_pixel = write(pixels, folder, "one-pixel.dcm")
    header = pydicom.dcmread(original)
    header.ImageComments = "repeat exposure"
    new_header = write(header, folder, "header.dcm")

    with running_listener(tmp_path, sessions=sessions) as harness:
        # radtriage's SCU offers each file only in its own syntax: the listener gets three encodings.
        assert send_datasets("127.0.0.1", harness.port, AE_TITLE, "SCU",
                             [original, copies["implicit"], copies["rle"]]) == [0, 0, 0]
        subprocess.run(["dcmsend", "-aec", AE_TITLE, "127.0.0.1", str(harness.port), str(copies["rle"])],
                       check=True, capture_output=True, timeout=RUN_TIMEOUT)
        assert [r for r, _ in harness.stores] == ["stored", "duplicate", "duplicate", "duplicate"]
        assert harness.rows() == 1 and len(harness.files()) == 1

        assert send_datasets("127.0.0.1", harness.port, AE_TITLE, "SCU", [one_pixel, new_header]) == [0, 0]
        assert [r for r, _ in harness.stores][4:] == ["stored", "stored"], "a changed image is a revision"
        rows, distinct, *_ = study_state(sessions)
        assert (rows, distinct) == (3, 1)

        # The API counts SOP instances; the older revisions are listed apart.
        api = client(sessions)
        (item,) = api.get("/api/worklist").json()["items"]
        assert item["instances"] == 1
        detail = api.get(f"/api/studies/{ds.StudyInstanceUID}").json()
        assert [i["sop_instance_uid"] for i in detail["instances"]] == [ds.SOPInstanceUID]
        assert [i["sop_instance_uid"] for i in detail["revisions"]] == [ds.SOPInstanceUID] * 2


def test_two_encodings_of_one_image_arriving_at_once_keep_one(tmp_path, sessions):
    """A PACS's transcode on a second association, or backfill's reading threads, must not
    slip a second copy past the duplicate check while the first is still being stored."""
    import threading

    from dicom.acceptance import identify, read_file
    from dicom.intake import take_in

    folder, data_dir = tmp_path / "sent", tmp_path / "data"
    pairs = []
    for seed in range(8):
        original = write(radiograph(seed=100 + seed), folder, f"{seed}.dcm")
        ds = pydicom.dcmread(original)
        ds.compress(RLELossless, generate_instance_uid=False)
        rle = folder / f"{seed}-rle.dcm"
        ds.save_as(rle, enforce_file_format=True)
        pairs.append((original, rle))

    def take(path: Path, barrier: threading.Barrier, outcomes: list) -> None:
        part = read_file(path)
        header = identify(part.dataset, part.transfer_syntax)
        barrier.wait()
        outcomes.append(take_in(part.parts, header, data_dir=data_dir, sessions=sessions).outcome.value)

    for pair in pairs:
        barrier, outcomes = threading.Barrier(2), []
        threads = [threading.Thread(target=take, args=(path, barrier, outcomes)) for path in pair]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(outcomes) == ["duplicate", "stored"], outcomes
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == len(pairs)
    assert len(list((data_dir / "objects").rglob("*.dcm"))) == len(pairs)
