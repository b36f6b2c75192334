"""Conformance of ``radtriage serve`` with real peers: every sample as sent, every edge file its status.

One daemon serves the whole module; each test only looks at what it sent.
"""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from dicom.scu import NO_CONTEXT, send_datasets
from tests.e2e.daemon import Daemon, as_sent_by_dcmtk
from tests.factories import dataset_bytes

pytestmark = pytest.mark.e2e

SC = "1.2.840.10008.5.1.4.1.1.7"
# What the listener answers each edge file sent as stored (pynetdicom SCU, raw bytes):
# stored as received (the listener never decodes pixels), refused at negotiation (SOP
# class not accepted: NO_CONTEXT), or refused with the status that says why.
EDGE_AS_STORED = {
    "966_bad_COM_marker.dcm": 0x0000,  # broken J2K codestream: stored; the scorer reports it
    "DX_J2K_0Padding_value_window_mismatch.dcm": 0x0000,
    "Fake_MONOHR1.dcm": 0x0000,
    "RG2_JPLY_bad_SOS.dcm": 0x0000,
    "pydicom_SC_rgb_rle_2frame.dcm": 0x0000,  # a secondary capture: accepted; triage skips it
    # Dataset says CR, request (file meta) says SC: the dataset's own class decides, as for
    # dcmsend (which sends it as CR) and backfill (dicom.acceptance).
    "medsiglip_encapsulated_cxr_fake.dcm": 0x0000,
    "pydicom_chrJapMulti_cr_chest_header_only.dcm": 0xA900,  # CR without pixel data
    "pydicom_chrKoreanMulti_cr_chest_header_only.dcm": 0xA900,
    "dcm4che_3gb-bulk-data-truncated.dcm": NO_CONTEXT,  # MR
    "fodicom_GH220_private_sopclass_nopixels.dcm": NO_CONTEXT,  # private SOP class
    "fodicom_GH223_private_SQ_nopixels.dcm": NO_CONTEXT,  # CT
    "pydicom_ExplVR_BigEndNoMeta.dcm": NO_CONTEXT,  # RT Plan
    "pydicom_MR_truncated.dcm": NO_CONTEXT,
    "pydicom_badVR.dcm": NO_CONTEXT,  # RT Dose
    "pydicom_rtplan_truncated.dcm": NO_CONTEXT,
}
# Files without a usable SOP class (no or empty file meta): sent as Secondary Capture, in
# the encoding their bytes are in. Non-accepted classes above are sent that way too, so
# the listener must parse what it was never meant to get.
EDGE_AS_SECONDARY_CAPTURE = {
    # "DICM" inside its data passes for a preamble's end, so what goes on the wire starts in the
    # middle of an element: bytes that contradict the syntax they are sent in.
    "dcm4che_no_preamble_dicm_in_data.dcm": (ExplicitVRLittleEndian, 0xC210),
    "pydicom_meta_missing_tsyntax.dcm": (ImplicitVRLittleEndian, 0xC220),
    "pydicom_nested_priv_SQ.dcm": (ImplicitVRLittleEndian, 0xC220),
    "pydicom_no_meta.dcm": (ImplicitVRLittleEndian, 0xC220),  # shifted garbage: no UID found
    "dcm4che_3gb-bulk-data-truncated.dcm": (ExplicitVRLittleEndian, 0xC220),  # its Study UID is not a UID
    # An MR or RT Plan dataset sent as a Secondary Capture: its own class is not accepted.
    "pydicom_MR_truncated.dcm": (ExplicitVRLittleEndian, 0x0122),
    "pydicom_rtplan_truncated.dcm": (ImplicitVRLittleEndian, 0x0122),
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, dcmtk):
    with Daemon(tmp_path_factory.mktemp("conformance")) as running:
        yield running


def stored_files(daemon: Daemon) -> list[tuple[str, str, bytes]]:
    """(SOP Instance UID, transfer syntax, dataset bytes) of every stored object."""
    found = []
    for path in (daemon.data_dir / "objects").rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found.append((str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID), dataset_bytes(path)))
    return found


def assert_nothing_half_written(daemon: Daemon) -> None:
    objects = daemon.data_dir / "objects"
    leftovers = [p for p in objects.rglob(".incoming-*")]
    assert leftovers == []
    with sqlite3.connect(daemon.data_dir / "radtriage.sqlite3") as db:
        rows = {r[0] for r in db.execute("SELECT path FROM instances")}
    files = {p.relative_to(daemon.data_dir).as_posix() for p in objects.rglob("*.dcm")}
    assert rows == files, "every file has its row and every row its file"


def counted(metrics: str, sample: str) -> float:
    """The value of one exposed sample."""
    [line] = [line for line in metrics.splitlines() if line.startswith(sample + " ")]
    return float(line.split()[-1])


def test_dcmsend_every_sample_is_stored_exactly_as_sent(daemon, samples):
    files = [f for folder in ("chest", "derived", "xray_nonchest") for f in sorted((samples / folder).glob("*.dcm"))]
    # +f: also the chest file without a file meta header.
    subprocess.run(["dcmsend", "+f", "--decompress-never", "-aec", "RADTRIAGE", "127.0.0.1", str(daemon.dicom_port),
                    *map(str, files)], check=True, capture_output=True, timeout=120)
    stored = stored_files(daemon)
    first_of: dict[str, Path] = {}  # SOP Instance UID → the first file sent with it
    for path in files:
        first_of.setdefault(str(pydicom.dcmread(path, force=True, stop_before_pixels=True).SOPInstanceUID), path)
    # derived/ holds one chest image in six other transfer syntaxes: the same image, kept once.
    assert sorted(uid for uid, _ts, _data in stored) == sorted(first_of)
    for uid, path in first_of.items():
        [(ts, data)] = [(ts, data) for stored_uid, ts, data in stored if stored_uid == uid]
        source = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        source_syntax = getattr(source, "file_meta", {}).get("TransferSyntaxUID")
        if source_syntax and source_syntax.is_compressed:
            assert ts == source_syntax, f"{path.name} was transcoded"
        assert data == as_sent_by_dcmtk(path, ts, daemon.folder), f"{path.name} differs from what DCMTK sent"
    assert_nothing_half_written(daemon)
    metrics = daemon.get("/metrics")  # the counters start at 0: each must have counted
    assert counted(metrics, 'radtriage_dicom_store_requests_total{result="stored",status="0x0000"}') > 0
    assert counted(metrics, 'radtriage_dicom_store_requests_total{result="duplicate",status="0x0000"}') > 0


def test_every_syntax_is_kept_when_the_sender_offers_only_its_own(daemon, samples, tmp_path):
    files = []
    for path in sorted((samples / "derived").glob("*.dcm")):
        # Each its own SOP instance (the samples share one), still in the syntax it was made in.
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        files.append(tmp_path / path.name)
        ds.save_as(files[-1], enforce_file_format=True)
    assert send_datasets("127.0.0.1", daemon.dicom_port, "RADTRIAGE", "TESTSCU", files) == [0] * len(files)
    stored = {(ts, data) for _uid, ts, data in stored_files(daemon)}
    for path in files:
        syntax = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        assert (syntax, dataset_bytes(path)) in stored, f"{path.name}: not stored byte for byte in {syntax}"


def wrapped(path: Path, syntax: str, folder: Path) -> Path:
    """``path``'s dataset bytes, untouched, behind a file meta calling it a Secondary Capture."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SC, generate_uid()
    meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    out = folder / f"sc-{path.name}"
    out.write_bytes(buffer.getvalue() + dataset_bytes(path))
    return out


def test_edge_files_get_their_status_and_the_daemon_stays_up(daemon, samples, tmp_path):
    edge = samples / "edge"
    names = sorted(EDGE_AS_STORED)
    statuses = send_datasets("127.0.0.1", daemon.dicom_port, "RADTRIAGE", "TESTSCU", [edge / n for n in names])
    assert dict(zip(names, statuses)) == EDGE_AS_STORED
    for name, (syntax, expected) in sorted(EDGE_AS_SECONDARY_CAPTURE.items()):
        status = send_datasets("127.0.0.1", daemon.dicom_port, "RADTRIAGE", "TESTSCU",
                               [wrapped(edge / name, syntax, tmp_path)])
        assert status == [expected], name
    assert sorted({f.name for f in edge.glob("*.dcm")}) == sorted(set(EDGE_AS_STORED) | set(EDGE_AS_SECONDARY_CAPTURE))
    assert daemon.health()["components"]["dicom_listener"]["status"] == "ok"
    assert_nothing_half_written(daemon)
    metrics = daemon.get("/metrics")
    assert counted(metrics, 'radtriage_dicom_store_requests_total{result="refused",status="0xA900"}') > 0
    assert 'reason="sop_class_not_supported"' not in metrics, "a refused presentation context is not a refusal"
    log = daemon.log()
    assert "C-STORE refused with 0xA900" in log
    assert "Covid0000" not in log and "999.999.01.23.45.6789" not in log, "no patient data in the log"


def test_cli_echo_and_send(daemon, tmp_path):
    from tests.factories import radiograph, write

    radtriage = [sys.executable, "-m", "radtriage"]
    echo = subprocess.run([*radtriage, "echo", "127.0.0.1", str(daemon.dicom_port)], capture_output=True, text=True,
                          timeout=60)
    assert echo.returncode == 0 and "0x0000 Success" in echo.stdout, echo.stderr
    folder = tmp_path / "to-send"
    for seed in range(3):
        write(radiograph(seed=seed), folder)
    sent = subprocess.run([*radtriage, "send", str(folder), "--to", f"127.0.0.1:{daemon.dicom_port}"],
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    assert "3 of 3 stored" in sent.stdout
    wrong = subprocess.run([*radtriage, "echo", "127.0.0.1", str(daemon.dicom_port), "--aec", "NOBODY"],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0 and "called AE title not recognised" in wrong.stderr
