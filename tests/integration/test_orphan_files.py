"""The start-up check: stored files no instance row names (a crash between file and row) are removed."""

from __future__ import annotations

import os
import time

import pydicom

from dicom.intake import identify, take_in
from dicom.orphans import remove_orphans
from dicom.storage import store_bytes
from tests.factories import radiograph, write


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_only_old_unrecorded_files_of_the_instance_tree_are_removed(sessions, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    received = write(radiograph(seed=1), tmp_path)
    ds = pydicom.dcmread(received)
    take_in(received.read_bytes(), identify(ds, str(ds.file_meta.TransferSyntaxUID)), data_dir=data_dir,
            sessions=sessions)
    (recorded,) = (data_dir / "objects").rglob("*.dcm")
    orphan = data_dir / store_bytes(data_dir, b"written, never recorded").relative_path
    fresh = data_dir / store_bytes(data_dir, b"being recorded right now").relative_path
    temporary = orphan.parent / ".incoming-abandoned.part"
    temporary.write_bytes(b"half")
    outside = data_dir / "elsewhere.dcm"
    outside.write_bytes(b"not ours to judge")
    for path in (orphan, temporary, outside, recorded):
        _age(path, 60)
    _age(fresh, 1)

    assert remove_orphans(data_dir, sessions, min_age=10) == 2
    assert not orphan.exists() and not temporary.exists()
    assert fresh.exists() and outside.exists()
    assert recorded.exists()
    assert remove_orphans(data_dir, sessions, min_age=10) == 0
