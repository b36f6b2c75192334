"""The operator's tools say what happened to each file: ``radtriage send`` (status names, a summary,
--keep-going, its exit code) and ``radtriage backfill --report`` (every skipped or failed file, why)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

from tests.factories import radiograph, write
from tests.integration.listener_harness import running_listener
from tests.integration.test_backfill import backfill

RUN_TIMEOUT = 120
CT = "1.2.840.10008.5.1.4.1.1.2"


def send(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radtriage", "send", "--to", f"127.0.0.1:{port}", *args],
                          check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def test_send_names_each_status_sums_up_and_keeps_going_only_when_asked(tmp_path):
    good = tmp_path / "good"
    for seed in range(2):
        write(radiograph(seed=seed), good)
    mixed = tmp_path / "mixed"
    shutil.copytree(good, mixed)
    no_pixels = radiograph(seed=5)
    del no_pixels.PixelData
    write(no_pixels, mixed, "no-pixels.dcm")
    ct = radiograph(seed=6)
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = CT
    write(ct, mixed, "ct.dcm")
    (mixed / "notes.txt").write_text("scanned on the old modality\n")

    with running_listener(tmp_path / "listener") as harness:
        stopped = send(harness.port, str(mixed))
        assert stopped.returncode == 1 and harness.rows() == 0, "a file it would refuse stops it before sending"
        assert "--keep-going" in stopped.stderr
        assert (f"{mixed / 'no-pixels.dcm'}: not sent: 0xA900 Failure: Data Set Does Not Match SOP Class "
                "(an image storage SOP class without Pixel Data)") in stopped.stdout.splitlines()

        kept_going = send(harness.port, "--keep-going", str(mixed))
        assert kept_going.returncode == 1, "not everything was stored"
        assert harness.rows() == 2
        lines = kept_going.stdout.splitlines()
        assert [line.split(": ", 1)[0] for line in lines[:5]] == [str(p) for p in sorted(mixed.iterdir())]
        assert f"{mixed / 'ct.dcm'}: 0x0122 Failure: Refused: SOP Class Not Supported" in lines
        assert sum(": 0x0000 Success" in line for line in lines) == 2
        assert f"{mixed / 'notes.txt'}: not sent: 0xC210 Failure: Cannot Understand (not a DICOM file" in "\n".join(lines)
        assert "2 of 5 stored; 2 not sent (radtriage would refuse them)" in lines
        assert "  1 × 0x0122 Failure: Refused: SOP Class Not Supported" in lines

        clean = send(harness.port, str(good))
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "2 of 2 stored" in clean.stdout.splitlines()


def test_backfill_report_gives_every_skipped_and_failed_file_a_readable_reason(tmp_path, samples,
                                                                               cxr_foundation_dir):
    folder = tmp_path / "archive"
    write(radiograph(seed=1), folder, "good.dcm")
    no_pixels = radiograph(seed=2)
    del no_pixels.PixelData
    write(no_pixels, folder, "no-pixels.dcm")
    (folder / "README").write_text("Exported from the old PACS, 2019.\n")
    shutil.copy(samples / "edge" / "966_bad_COM_marker.dcm", folder / "undecodable.dcm")
    report = tmp_path / "report.tsv"

    summary = backfill(tmp_path / "data", cxr_foundation_dir, "--report", str(report), str(folder))
    with report.open(newline="") as fh:
        rows = {Path(row["path"]).name: (row["outcome"], row["reason"]) for row in csv.DictReader(fh, delimiter="\t")}

    assert set(rows) == {"no-pixels.dcm", "README", "undecodable.dcm"}
    assert rows["README"][0] == "skipped" and rows["README"][1].startswith("not a DICOM file (no DICM preamble")
    assert rows["no-pixels.dcm"] == ("skipped", "an image storage SOP class without Pixel Data")
    outcome, reason = rows["undecodable.dcm"]
    assert outcome == "failed" and reason, "a study that failed names its files"
    assert not any("Error)" in why for _, why in rows.values()), "reasons, not exception class names alone"
    assert (summary["skipped"], summary["failed"]) == (2, 1)
