"""Worklist speed at scale and ingest under read load, on SQLite and PostgreSQL. Not a test.

Fills N studies (received over 3 days: priorities, AI raises, states, scores, drafts, claims,
most older ones read) with bulk inserts, then prints p50/p95 in ms (each figure measured
``--repeats`` times: min / median) of the first page, a deep cursor page, a filtered page, a
study detail and a claim, in-process (``db.worklist`` / ``db.reading``) and over HTTP (the
FastAPI app under uvicorn on a loopback port), the growth from ``--small`` to N studies, and
the query plans of the page query. Then C-STORE instances/s of ``radtriage serve`` idle and
with clients polling the worklist continuously.

    python benchmarks/worklist.py [--studies 100000] [--small 1000] [--no-postgres] [--no-ingest]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402

from common import DISCLAIMER, EventStage, Priority, StudyStatus, Waits  # noqa: E402
from db.escalation import escalate_due  # noqa: E402
from db.models import NO_SCORE_KEY, Draft, Event, Instance, Score, Study  # noqa: E402
from db.reading import claim, release  # noqa: E402
from db.session import make_engine, make_session_factory, migrate  # noqa: E402
from db.study_detail import study_detail  # noqa: E402
from db.worklist import Filters, _conditions, encode_cursor, page  # noqa: E402
from tests.conftest import POSTGRES_URL  # noqa: E402

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
WAITS = Waits(dt.timedelta(minutes=120), dt.timedelta(minutes=60))
FINDINGS = ["pneumothorax", "pleural_effusion", "consolidation", "cardiomegaly", "edema", "fracture"]


def fill(sessions, n: int, seed: int = 0) -> None:
    """``n`` studies as a department leaves them after 3 days, in bulk."""
    rng = random.Random(seed)
    with sessions() as session:
        first = (session.scalar(select(func.max(Study.id))) or 0) + 1
        for start in range(0, n, 10_000):
            studies, instances, scores, drafts, events = [], [], [], [], []
            for sid in range(first + start, first + min(n, start + 10_000)):
                received = NOW - dt.timedelta(seconds=rng.uniform(0, 3 * 86400))
                ordered = rng.choices(list(Priority), weights=(70, 20, 10))[0]
                status = rng.choices([StudyStatus.TRIAGED, StudyStatus.QUEUED, StudyStatus.RECEIVING],
                                     weights=(92, 5, 3))[0]
                triaged = status == StudyStatus.TRIAGED
                urgency = round(rng.betavariate(1.2, 4) * 100, 2) if triaged else None
                ai = Priority.STAT if (urgency or 0) > 80 else Priority.URGENT if (urgency or 0) > 55 else ordered
                priority = Priority.most_urgent(ordered, ai)
                waited = NOW - received
                read = triaged and waited > dt.timedelta(hours=6) and rng.random() < 0.95
                reader = f"reader{rng.randrange(10)}" if not read and rng.random() < 0.03 else None
                studies.append(dict(
                    id=sid, study_instance_uid=f"2.25.{sid}", accession_number=f"ACC{sid:08d}",
                    ordered_priority=ordered.value, priority=priority.value, priority_rank=priority.rank,
                    effective_rank=priority.rank, urgency_score=urgency,
                    urgency_key=NO_SCORE_KEY if urgency is None else urgency, status=status.value,
                    reasons=["AI finding"] if ai is not ordered else [], revision=1, received_at=received,
                    last_instance_at=received, state_changed_at=received, attempts=0,
                    triaged_at=received + dt.timedelta(seconds=20) if triaged else None,
                    instance_count=2, has_frontal=True, has_lateral=True, views_complete=True,
                    reader=reader, reader_claimed_at=NOW if reader else None, reader_active_at=NOW if reader else None,
                    read_at=received + dt.timedelta(hours=5) if read else None, read_by="reader1" if read else None))
                for k, view in enumerate(("frontal", "lateral")):
                    instances.append(dict(
                        id=2 * sid + k, study_id=sid, series_instance_uid=f"2.25.{sid}.1",
                        sop_instance_uid=f"2.25.{sid}.1.{k}", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
                        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="DX", view=view,
                        path=f"objects/{sid}/{k}.dcm", content_hash=f"blake3:{sid:032d}{k}", size_bytes=1,
                        received_at=received))
                    if triaged:
                        scores.append(dict(study_id=sid, revision=1, model="cxr_foundation", instance_id=2 * sid + k,
                                           findings={f: round(rng.random(), 3) for f in FINDINGS}))
                events.append(dict(study_id=sid, stage=EventStage.COMPLETE.value, detail="views", created_at=received))
                if triaged:
                    events.append(dict(study_id=sid, stage=EventStage.TRIAGED.value, detail="revision 1",
                                       created_at=received))
                    if rng.random() < 0.3:
                        drafts.append(dict(study_id=sid, revision=1, model_id="medgemma", prompt_version="v1",
                                           disclaimer=DISCLAIMER, findings="No acute findings.",
                                           impression="Normal chest.", raw_text=""))
            for model, rows in ((Study, studies), (Instance, instances), (Score, scores), (Draft, drafts),
                                (Event, events)):
                if rows:
                    session.execute(insert(model), rows)
            session.commit()
        escalate_due(session, waits=WAITS, now=NOW, limit=10**9)


def timings(step, samples: int) -> tuple[float, float]:
    """p50 and p95 of ``step`` in ms."""
    spent = []
    for i in range(samples):
        started = time.perf_counter()
        step(i)
        spent.append((time.perf_counter() - started) * 1000)
    spent.sort()
    return spent[len(spent) // 2], spent[int(len(spent) * 0.95) - 1]


def measure(name: str, step, samples: int, repeats: int, results: dict) -> None:
    runs = [timings(step, samples) for _ in range(repeats)]
    p50s, p95s = [r[0] for r in runs], [r[1] for r in runs]
    results[name] = (min(p50s), statistics.median(p50s), min(p95s), statistics.median(p95s))
    print(f"  {name:<28} p50 {min(p50s):7.2f} / {statistics.median(p50s):7.2f}   "
          f"p95 {min(p95s):7.2f} / {statistics.median(p95s):7.2f} ms", flush=True)


class Fixture:
    """What the measured operations pick from: active study ids, a deep cursor."""

    def __init__(self, reads) -> None:
        with reads() as session:
            active = select(Study).where(Study.read_at.is_(None))
            count = session.scalar(select(func.count()).select_from(active.subquery()))
            middle = session.scalars(active.order_by(Study.effective_rank.desc(), Study.urgency_key.desc(),
                                                     Study.received_at, Study.id).offset(count // 2).limit(1)).one()
            self.deep_cursor = encode_cursor(middle)
            self.unclaimed = session.scalars(select(Study.study_instance_uid).where(
                Study.read_at.is_(None), Study.reader.is_(None)).limit(2000)).all()
            self.any_uid = session.scalars(select(Study.study_instance_uid).limit(2000)).all()
            self.active = count


FILTERED = Filters(priority=(Priority.URGENT,), claimed="unclaimed", status=(StudyStatus.TRIAGED,))


def in_process(sessions, reads, fx: Fixture, samples: int, repeats: int) -> dict:
    results: dict = {}

    def read(call):
        def step(i):
            with reads() as session:
                call(session, i)
        return step

    measure("first page", read(lambda s, i: page(s, now=NOW)), samples, repeats, results)
    measure("deep cursor page", read(lambda s, i: page(s, now=NOW, cursor=fx.deep_cursor)), samples, repeats, results)
    measure("filtered page", read(lambda s, i: page(s, now=NOW, filters=FILTERED)), samples, repeats, results)
    measure("accession prefix page", read(lambda s, i: page(
        s, now=NOW, filters=Filters(accession_prefix=fx.any_uid[i % len(fx.any_uid)].replace("2.25.", "ACC")[:9]))),
        samples, repeats, results)
    measure("study detail", read(lambda s, i: study_detail(s, study_uid=fx.any_uid[i % len(fx.any_uid)])),
            samples, repeats, results)

    def claim_step(i):
        with sessions() as session:
            claim(session, study_uid=fx.unclaimed[i % len(fx.unclaimed)], user="bench")

    def release_all():
        with sessions() as session:
            for uid in fx.unclaimed[:samples]:
                release(session, study_uid=uid, user="bench")

    runs = []
    for _ in range(repeats):
        runs.append(timings(claim_step, min(samples, len(fx.unclaimed))))
        release_all()
    p50s, p95s = [r[0] for r in runs], [r[1] for r in runs]
    results["claim"] = (min(p50s), statistics.median(p50s), min(p95s), statistics.median(p95s))
    print(f"  {'claim (commit)':<28} p50 {min(p50s):7.2f} / {statistics.median(p50s):7.2f}   "
          f"p95 {min(p95s):7.2f} / {statistics.median(p95s):7.2f} ms", flush=True)
    return results


def serve_api(sessions):
    """The FastAPI app under uvicorn on a free loopback port, in a thread: (base URL, server)."""
    import uvicorn

    from radtriage import health, metrics
    from radtriage.api import create_api
    from tests.e2e.daemon import free_port

    app = create_api(sessions=sessions, health=lambda: health.report({}), metrics=metrics.render)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def over_http(sessions, fx: Fixture, samples: int, repeats: int) -> dict:
    import httpx

    base, server = serve_api(sessions)
    results: dict = {}
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            def get(path_of):
                def step(i):
                    response = client.get(path_of(i))
                    response.raise_for_status()
                return step

            measure("HTTP first page", get(lambda i: "/api/worklist"), samples, repeats, results)
            measure("HTTP deep cursor page", get(lambda i: f"/api/worklist?cursor={fx.deep_cursor}"), samples,
                    repeats, results)
            measure("HTTP filtered page", get(lambda i: f"/api/worklist?priority=URGENT&claimed=unclaimed"
                                                        f"&status={StudyStatus.TRIAGED.value}"), samples, repeats, results)
            measure("HTTP study detail", get(lambda i: f"/api/studies/{fx.any_uid[i % len(fx.any_uid)]}"), samples,
                    repeats, results)
    finally:
        server.should_exit = True
    return results


def plans(engine) -> None:
    with make_session_factory(engine, readonly=True)() as session:
        for label, filters in (("first page", Filters()), ("filtered", FILTERED),
                               ("accession prefix", Filters(accession_prefix="ACC0001"))):
            query = select(Study).where(*_conditions(session, filters)).order_by(Study.effective_rank.desc(), Study.urgency_key.desc(),
                                            Study.received_at, Study.id).limit(51)
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
            print(f"  plan, {label}:")
            for row in session.execute(text(prefix + str(compiled))).all():
                print("    " + " | ".join(str(c) for c in row))


class Database:
    """A fresh SQLite file or PostgreSQL schema, dropped afterwards."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind, self.folder = kind, folder

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            self.folder.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{self.folder / 'radtriage.sqlite3'}"
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(POSTGRES_URL)
        with self.admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')
        return f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options=-csearch_path%3D{self.schema}"

    def __exit__(self, *exc) -> None:
        if self.kind == "postgresql":
            with self.admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA "{self.schema}" CASCADE')
            self.admin.dispose()


def queries(kind: str, work: Path, sizes: list[int], args) -> None:
    figures = {}
    for n in sizes:
        with Database(kind, work / f"{kind}-{n}") as url:
            engine = make_engine(url)
            migrate(engine)
            sessions, reads = make_session_factory(engine), make_session_factory(engine, readonly=True)
            started = time.perf_counter()
            fill(sessions, n)
            if kind == "postgresql":
                with engine.connect() as connection:
                    connection.exec_driver_sql("ANALYZE")
                    connection.commit()
            fx = Fixture(reads)
            print(f"\n{kind}, {n:,} studies ({fx.active:,} active), filled in {time.perf_counter() - started:.1f} s",
                  flush=True)
            figures[n] = in_process(sessions, reads, fx, args.samples, args.repeats)
            if n == sizes[-1]:
                if not args.no_http:
                    over_http(sessions, fx, args.samples // 2, args.repeats)
                plans(engine)
            engine.dispose()
    if len(sizes) > 1:
        small, large = figures[sizes[0]], figures[sizes[-1]]
        print(f"  growth {sizes[0]:,} → {sizes[-1]:,} (median p95 ratio): " + ", ".join(
            f"{name} {large[name][3] / small[name][3]:.2f}×" for name in large))


def _as_remote_client(client, base: str, stop, counter) -> None:
    """Run ``client`` as a remote browser would be: reading rooms' browsers run on other
    machines, so on this shared box the clients yield the CPU to the daemon (nice 19) and
    what is measured is the daemon's own work for them (HTTP, queries, the event stream)."""
    os.nice(19)
    try:
        client(base, stop, counter)
    except OSError:
        pass  # the daemon stopped first


def _hammer(base: str, stop, counter) -> None:
    """A client in a tight loop: the worst case, one core's worth of HTTP work."""
    while not stop.is_set():
        with urllib.request.urlopen(f"{base}/api/worklist", timeout=30) as response:
            response.read()
        with counter.get_lock():
            counter.value += 1


def _like_the_page(base: str, stop, counter) -> None:
    """A client as the worklist page behaves: the event stream held open, the first page read
    again after each change (at most four times a second)."""
    with urllib.request.urlopen(f"{base}/api/events", timeout=30) as stream:
        last = 0.0
        while not stop.is_set():
            line = stream.readline()
            if not line:
                return
            if line.startswith(b"data:") and time.perf_counter() - last >= 0.25:
                with urllib.request.urlopen(f"{base}/api/worklist", timeout=30) as response:
                    response.read()
                with counter.get_lock():
                    counter.value += 1
                last = time.perf_counter()


def ingest_under_reads(kind: str, work: Path, count: int, readers: int, repeats: int) -> None:
    from benchmarks.ingest import make_instances, push
    from tests.e2e.daemon import Daemon

    files = make_instances(work / "instances", count, 512, 512)
    modes = {"idle": None, f"{readers} page clients": _like_the_page, f"{readers} tight-loop clients": _hammer}
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    for run in range(repeats):
        for mode, client in modes.items():
            with Database(kind, work / f"ingest-{kind}-{run}-{len(rates[mode])}-{mode[:1]}") as url:
                env = {"RADTRIAGE_DATABASE_URL": url} if kind == "postgresql" else {}
                with Daemon(work / f"daemon-{kind}-{run}-{mode.replace(' ', '-')}", **env) as daemon:
                    stop, reads = multiprocessing.Event(), multiprocessing.Value("i", 0)
                    base = f"http://127.0.0.1:{daemon.http_port}"
                    clients = [multiprocessing.Process(target=_as_remote_client, args=(client, base, stop, reads),
                                                       daemon=True) for _ in range(readers if client else 0)]
                    for c in clients:
                        c.start()
                    time.sleep(1.0 if clients else 0)  # the clients connect and read before the push starts
                    before = reads.value
                    seconds = push(daemon.dicom_port, files, 1)
                    during = reads.value - before
                    stop.set()
                    for c in clients:
                        c.join(5)
                        if c.is_alive():
                            c.kill()
                    rates[mode].append(count / seconds)
                    print(f"  {kind}: {count / seconds:6.1f} instances/s, {mode} "
                          f"({during / seconds:.0f} worklist reads/s)", flush=True)
    idle = statistics.median(rates["idle"])
    for mode in list(modes)[1:]:
        print(f"  {kind}: ingest with {mode} / idle = {statistics.median(rates[mode]) / idle:.2f}× "
              f"(medians of {repeats}; best {max(rates[mode]) / max(rates['idle']):.2f}×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000, help="the size growth is measured from (0: skip)")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--no-ingest", action="store_true")
    parser.add_argument("--only-ingest", action="store_true", help="skip the query figures")
    parser.add_argument("--ingest-instances", type=int, default=600)
    parser.add_argument("--readers", type=int, default=4)
    args = parser.parse_args()
    kinds = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    sizes = ([args.small] if args.small else []) + [args.studies]
    with tempfile.TemporaryDirectory(prefix="rt-worklist-bench-") as tmp:
        for kind in kinds if not args.only_ingest else []:
            queries(kind, Path(tmp), sizes, args)
        if not args.no_ingest:
            print("\ningest (C-STORE, 512x512 instances, one association) under worklist polling")
            for kind in kinds:
                ingest_under_reads(kind, Path(tmp), args.ingest_instances, args.readers, args.repeats)


if __name__ == "__main__":
    main()
