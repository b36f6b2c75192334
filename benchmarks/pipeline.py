"""Time from a study's last C-STORE response to its priority being committed.

Runs ``radtriage serve`` (stand-in CXR Foundation, built here) twice: on the embedded
default (file broker, SQLite) and on Redis + PostgreSQL, pushes N two-view studies
(PA + lateral, one association each) at a steady pace and prints p50/p95/max latency.
The goal (issue 5) is p95 <= 2 s for complete two-view studies.

    python benchmarks/pipeline.py [--studies 200] [--interval 0.5] [--skip-redis]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402

from tests.e2e.daemon import Daemon, c_store  # noqa: E402
from tests.factories import radiograph  # noqa: E402
from tests.standins import build_cxr_foundation_standin  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


def two_view_study(seed: int):
    pa = radiograph(view="PA", seed=seed, size=256)
    lateral = radiograph(view="LL", seed=seed + 1, size=256, study_uid=str(pa.StudyInstanceUID))
    return [pa, lateral]


def run(label: str, folder: Path, model_dir: Path, studies: int, interval: float, database_url=None, **env):
    env["RADTRIAGE_CXR_FOUNDATION_DIR"] = str(model_dir)
    env.setdefault("RADTRIAGE_STABLE_SECONDS", "5")
    if database_url:
        env["RADTRIAGE_DATABASE_URL"] = database_url
    sent: dict[str, float] = {}
    with Daemon(folder, **env) as daemon:
        # Warm the worker (model load) outside the measurement.
        warm = two_view_study(10_000)
        c_store(daemon.dicom_port, warm)
        daemon.wait_triaged(1, timeout=300)
        for i in range(studies):
            datasets = two_view_study(2 * i)
            statuses = c_store(daemon.dicom_port, datasets)
            assert statuses == [0, 0], statuses
            sent[str(datasets[0].StudyInstanceUID)] = time.time()  # after the last response
            time.sleep(interval)
        daemon.wait_triaged(studies + 1, timeout=600)
        url = database_url or f"sqlite:///{daemon.data_dir / 'radtriage.sqlite3'}"
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT study_instance_uid, triaged_at FROM studies")).all()
    engine.dispose()
    latencies = []
    for uid, triaged_at in rows:
        if uid in sent:
            if isinstance(triaged_at, str):
                triaged_at = dt.datetime.fromisoformat(triaged_at)
            if triaged_at.tzinfo is None:
                triaged_at = triaged_at.replace(tzinfo=dt.timezone.utc)
            latencies.append(triaged_at.timestamp() - sent[uid])
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[max(0, int(round(0.95 * len(latencies))) - 1)]
    print(f"{label:<28} studies={len(latencies):4d}  p50={p50:6.3f} s  p95={p95:6.3f} s  max={latencies[-1]:6.3f} s"
          f"  goal p95<=2 s: {'met' if p95 <= 2 else 'NOT met'}")
    return p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between studies")
    parser.add_argument("--skip-redis", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_cxr_foundation_standin(tmp / "model")
        print(f"{args.studies} two-view studies, one every {args.interval} s, stand-in CXR Foundation, 2 CPU cores")
        run("embedded (files + SQLite)", tmp / "embedded", model_dir, args.studies, args.interval)
        if not args.skip_redis:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(POSTGRES)
            with admin.begin() as connection:
                connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            try:
                run("Redis + PostgreSQL", tmp / "redis", model_dir, args.studies, args.interval,
                    database_url=f"{POSTGRES}?options=-csearch_path%3D{schema}",
                    RADTRIAGE_BROKER_URL=REDIS, RADTRIAGE_BROKER_KEY_PREFIX=f"{schema}:")
            finally:
                with admin.begin() as connection:
                    connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
