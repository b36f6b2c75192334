"""How many listener processes ``serve`` runs, and which kind of listener that gives."""

from __future__ import annotations

import os

from dicom.listener import Listener
from dicom.netseam import ListenerPool
from radtriage.listening import MAX_AUTO_PROCESSES, build_for_serve, listener_processes
from radtriage.settings import Settings


def test_auto_is_one_process_per_usable_core_up_to_the_cap(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(3)))
    assert listener_processes(Settings(data_dir=tmp_path)) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(64)))
    assert listener_processes(Settings(data_dir=tmp_path)) == MAX_AUTO_PROCESSES
    assert listener_processes(Settings(data_dir=tmp_path, dicom_listener_processes=5)) == 5


def test_one_process_serves_in_process_and_more_make_a_pool(tmp_path):
    one = build_for_serve(Settings(data_dir=tmp_path, dicom_listener_processes=1), sessions=None, config_file=None)
    assert isinstance(one, Listener)
    pool = build_for_serve(Settings(data_dir=tmp_path, dicom_listener_processes=3), sessions=None, config_file="x.toml")
    assert isinstance(pool, ListenerPool)
    command = pool._command(7)
    assert command[1:] == ["-m", "radtriage.listener_member", "--channel-fd", "7", "--config", "x.toml"]


def test_plain_pynetdicom_serves_in_one_process(tmp_path):
    s = Settings(data_dir=tmp_path, dicom_listener_processes=3, dicom_plain_pynetdicom=True)
    assert listener_processes(s) == 1
    listener = build_for_serve(s, sessions=None, config_file=None)
    assert isinstance(listener, Listener) and listener.config.plain_pynetdicom
