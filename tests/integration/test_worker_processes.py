"""``radtriage worker -c N`` runs N processes that share the cores: each triages, each model
call limited to its share of the threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Study
from tests.factories import radiograph
from tests.integration.worker_support import complete_all, ingest, worker_context
from worker.loops import OutboxRelay
from worker.tasks import create_app

ROOT = Path(__file__).parents[2]


def test_threads_limit_tensorflow_in_the_process_that_loads_the_model(cxr_foundation_dir):
    pytest.importorskip("transformers")
    code = (
        "import sys; from pathlib import Path; from scoring.cxr_foundation import CxrFoundation; "
        "m = CxrFoundation.load(Path(sys.argv[1]), threads=1); t = m._tf.config.threading; "
        "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads()); "
        "m.embed_text('no pneumothorax')"
    )
    done = subprocess.run([sys.executable, "-c", code, str(cxr_foundation_dir)], check=False, cwd=ROOT,
                          capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1", "1"]


def test_two_worker_processes_both_triage(tmp_path, cxr_foundation_dir):
    pytest.importorskip("transformers")
    ctx = worker_context(tmp_path, cxr_foundation_dir)
    for seed in range(8):
        ingest(ctx, radiograph(seed=seed, size=96))
    study_ids = complete_all(ctx)
    assert len(study_ids) == 8
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "RADTRIAGE_DATA_DIR": str(ctx.config.data_dir), "RADTRIAGE_CXR_FOUNDATION_DIR": str(cxr_foundation_dir),
           "RADTRIAGE_MEDGEMMA_MODEL": str(tmp_path / "no-medgemma")}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "radtriage", "worker", "--queues", "triage", "-c", "2",
                               "--quiet"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        assert OutboxRelay(app=create_app(ctx.config.broker), sessions=ctx.sessions).run_once() == 8
        deadline = time.monotonic() + 300
        while True:
            with ctx.sessions() as session:
                rows = session.execute(select(Study.status, Study.claimed_by)).all()
            if all(status == "triaged" for status, _ in rows) or time.monotonic() > deadline:
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        log.close()
    assert [status for status, _ in rows] == ["triaged"] * 8, (tmp_path / "worker.log").read_text(errors="replace")
    # host:pid of the process that claimed each study: both children took work, not the parent.
    claimants = {claimed_by for _, claimed_by in rows}
    assert len(claimants) == 2, claimants
    assert f":{worker.pid}" not in "".join(claimants)
