"""The worker side gets its configs from the settings, built in ``radtriage.wiring``."""

from __future__ import annotations

import time

from radtriage.settings import Settings
from radtriage.wiring import IMPLICIT_SR, destinations, dispatch_config, sender_config, sweep_config, worker_config


def _sr(settings: Settings):
    """The DICOM SR destination the legacy sr_destination settings make."""
    (destination,) = [d for d in destinations(settings) if d.name == IMPLICIT_SR]
    return sender_config(settings, destination), dispatch_config(settings, destination)


def test_sr_export_waits_5_s_doubling_up_to_the_setting(tmp_path) -> None:
    config, dispatch = _sr(Settings(data_dir=tmp_path, sr_destination="pacs.local:104", sr_retry_max_seconds=60))
    assert (config.host, config.port) == ("pacs.local", 104)
    assert [dispatch.backoff.seconds(n) for n in range(6)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    # As before: retried while the PACS is unavailable, however long.
    assert dispatch.max_attempts is None and dispatch.max_age is None


def test_a_cap_below_the_first_wait_is_every_wait(tmp_path) -> None:
    _config, dispatch = _sr(Settings(data_dir=tmp_path, sr_destination="pacs.local:104", sr_retry_max_seconds=4))
    assert {dispatch.backoff.seconds(n) for n in range(5)} == {4.0}


def test_worker_config_follows_the_settings(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "data", task_max_retries=2, draft_batch=7,
                        dicom_accepted_sop_classes="1.2.3,1.2.4")
    config = worker_config(settings)
    assert config.database_url == settings.effective_database_url
    assert config.data_dir.is_absolute() and config.broker.folder == config.data_dir / "broker"
    assert config.broker.embedded and not config.export_drafts
    assert (config.task_max_retries, config.draft_batch) == (2, 7)
    assert config.accepted_sop_classes == {"1.2.3", "1.2.4"}
    assert config.embedder.embedder == "cxr_foundation"
    assert worker_config(Settings(data_dir=tmp_path, sr_destination="pacs:104")).export_drafts
    assert sweep_config(settings).worker_lost_seconds == settings.worker_lost_seconds


def test_the_heartbeat_beats_from_a_thread_and_removes_its_row_when_stopped(tmp_path) -> None:
    from db.heartbeats import fresh_names
    from db.session import make_engine, make_session_factory, migrate
    from worker import heartbeat

    url = f"sqlite:///{tmp_path / 'beats.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    sessions = make_session_factory(engine)
    beats = heartbeat.start(url, queues="triage", lost_after=1.5)  # a beat every 0.5 s
    try:
        time.sleep(1.2)  # the worker's own thread is busy meanwhile: the beats go on
        with sessions() as session:
            assert fresh_names(session, within_seconds=1.0) == {heartbeat.worker_name()}
    finally:
        beats.terminate()
    with sessions() as session:
        assert fresh_names(session, within_seconds=60) == set()  # gone: the sweep may re-drive at once
    engine.dispose()
