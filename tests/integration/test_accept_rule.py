"""One accept/refuse rule: every route into radtriage takes in the same files and refuses the same
files: DCMTK's dcmsend and radtriage's SCU to the listener, ``radtriage send``, and backfill."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
from sqlalchemy import select

from db.models import Instance
from dicom.errors import InvalidDataset
from dicom.scu import send_datasets
from tests.factories import radiograph, write
from tests.integration.listener_harness import AE_TITLE, running_listener
from tests.integration.test_backfill import backfill

RUN_TIMEOUT = 180
_SENT = re.compile(r"^(?P<path>.+): (?P<code>0x[0-9A-F]{4}) ")


def candidates(samples: Path, folder: Path) -> list[Path]:
    """Real samples (each SOP instance once: derived/ repeats one) and made ones, in one folder."""
    folder.mkdir()
    for path in [*(samples / "chest").glob("*.dcm"), *(samples / "edge").glob("*.dcm"),
                 *(samples / "xray_nonchest").glob("*.dcm"), samples / "README.md"]:
        shutil.copy(path, folder / path.name)
    write(radiograph(seed=1), folder, "made-good.dcm")
    stale = radiograph(seed=2)
    stale.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # meta says SC, dataset DX
    write(stale, folder, "made-stale-meta.dcm")
    short = radiograph(seed=3)
    short.PixelData = short.PixelData[:-100]
    write(short, folder, "made-short-pixels.dcm")
    no_pixels = radiograph(seed=4)
    del no_pixels.PixelData
    write(no_pixels, folder, "made-no-pixels.dcm")
    return sorted(folder.iterdir())


def stored_uids(harness) -> set[str]:
    with harness.sessions() as session:
        return set(session.scalars(select(Instance.sop_instance_uid)))


def uid_of(path: Path) -> str | None:
    try:
        return str(pydicom.dcmread(path, force=True, stop_before_pixels=True).get("SOPInstanceUID") or "") or None
    except Exception:  # noqa: BLE001  (README.md)
        return None


def test_a_file_refused_by_one_route_is_refused_by_all(tmp_path, samples, dcmtk, cxr_foundation_dir):
    files = candidates(samples, tmp_path / "files")
    names = {p.name for p in files}

    with running_listener(tmp_path / "dcmsend") as harness:
        subprocess.run(["dcmsend", "+f", "--no-halt", "-aec", AE_TITLE, "127.0.0.1", str(harness.port),
                        *map(str, files)], check=False, capture_output=True, timeout=RUN_TIMEOUT)
        by_dcmsend = stored_uids(harness)

    by_scu = set()
    with running_listener(tmp_path / "scu") as harness:
        for path in files:
            try:
                if send_datasets("127.0.0.1", harness.port, AE_TITLE, "SCU", [path]) == [0]:
                    by_scu.add(path.name)
            except InvalidDataset:  # not DICOM at all: radtriage's SCU cannot even say what it is
                pass

    with running_listener(tmp_path / "send") as harness:
        sent = subprocess.run([sys.executable, "-m", "radtriage", "send", "--keep-going", "--to",
                               f"127.0.0.1:{harness.port}", str(tmp_path / "files")],
                              check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        by_send = {Path(m["path"]).name for m in map(_SENT.match, sent.stdout.splitlines())
                   if m and m["code"] == "0x0000"}
        assert stored_uids(harness) == {uid_of(tmp_path / "files" / name) for name in by_send}
    assert sent.returncode == 1, "some files were not stored"

    report = tmp_path / "report.tsv"
    summary = backfill(tmp_path / "backfill", cxr_foundation_dir, "--dry-run", "--report", str(report),
                       str(tmp_path / "files"))
    with report.open(newline="") as fh:
        skipped = {Path(row["path"]).name: row["reason"] for row in csv.DictReader(fh, delimiter="\t")}
    by_backfill = names - set(skipped)
    assert summary["would be stored"] == len(by_backfill)

    assert by_scu == by_send == by_backfill
    assert by_dcmsend == {uid_of(tmp_path / "files" / name) for name in by_backfill}
    # Neither all nor nothing: the rule decided something.
    assert {"made-good.dcm", "made-stale-meta.dcm", "966_fixed.dcm"} <= by_backfill
    assert {"README.md", "made-short-pixels.dcm", "made-no-pixels.dcm"} <= names - by_backfill
    assert skipped["README.md"].startswith("not a DICOM file (no DICM preamble")
    refused_lines = {Path(m["path"]).name: line for line in sent.stdout.splitlines()
                     if (m := _SENT.match(line.replace(": not sent", "")))}
    assert "0xA900 Failure: Data Set Does Not Match SOP Class" in refused_lines["made-short-pixels.dcm"]
    assert skipped["made-short-pixels.dcm"] in refused_lines["made-short-pixels.dcm"], "the same reason"
