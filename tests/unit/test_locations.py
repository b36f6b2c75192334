"""Start-up says where the data and the database are, and warns when a relative data folder
would make a new, empty worklist in whatever directory the daemon was started from."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from radtriage.locations import log_locations
from radtriage.settings import Settings

LOG = logging.getLogger("radtriage.test-locations")


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A fresh current directory and no RADTRIAGE_* variable (the defaults are what is tested)."""
    for name in [n for n in os.environ if n.startswith("RADTRIAGE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def logged(caplog, settings: Settings) -> list[tuple[int, str]]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOG.name):
        log_locations(settings, LOG)
    return [(r.levelno, r.getMessage()) for r in caplog.records]


def test_the_default_folder_started_elsewhere_is_named_absolutely_and_warned_about(elsewhere, caplog):
    settings = Settings()
    assert not settings.data_dir.is_absolute(), "the default is relative"
    records = logged(caplog, settings)
    folder = elsewhere / settings.data_dir
    assert (logging.INFO, f"data folder {folder}; database sqlite:///{folder / 'radtriage.sqlite3'}") in records
    warnings = [message for level, message in records if level == logging.WARNING]
    assert len(warnings) == 1 and str(folder) in warnings[0] and "does not exist yet" in warnings[0]
    assert "RADTRIAGE_DATA_DIR" in warnings[0]

    folder.mkdir()  # a folder without a database is no worklist either
    [warning] = [m for level, m in logged(caplog, settings) if level == logging.WARNING]
    assert "holds no database yet" in warning

    (folder / "radtriage.sqlite3").touch()  # started where the data is: nothing to warn about
    assert [level for level, _ in logged(caplog, settings)] == [logging.INFO]


def test_an_absolute_folder_is_not_warned_about_and_a_password_is_masked(elsewhere, caplog):
    settings = Settings(data_dir=elsewhere / "new-data", database_url="postgresql://radtriage:s3cret@db:5432/worklist")
    records = logged(caplog, settings)
    expected = f"data folder {elsewhere / 'new-data'}; database postgresql://radtriage:***@db:5432/worklist"
    assert records == [(logging.INFO, expected)]
    assert "s3cret" not in caplog.text


def test_a_relative_folder_with_its_database_elsewhere_warns_only_when_missing(elsewhere, caplog):
    settings = Settings(data_dir=Path("images"), database_url="postgresql://db/worklist")
    assert [level for level, _ in logged(caplog, settings)] == [logging.INFO, logging.WARNING]
    (elsewhere / "images").mkdir()
    assert [level for level, _ in logged(caplog, settings)] == [logging.INFO]
