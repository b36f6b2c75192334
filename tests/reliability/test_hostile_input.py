"""Hostile input against ``radtriage serve``: broken files over C-STORE and garbage at the PDU level.

The daemon answers every C-STORE with a status (or aborts that association cleanly), never
hangs and never dies; C-ECHO works afterwards; its listener processes' threads and open files
return to their level before; and the log holds no traceback, one line per peer error at most,
rate-limited per address.
"""

from __future__ import annotations

import concurrent.futures
import random
import socket
import threading
import time

import pytest
from pydicom import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from tests.e2e.daemon import Daemon
from tests.factories import radiograph
from tests.reliability.harness import (
    associate_rq,
    closed_by_peer,
    echo,
    encode,
    listener_pids,
    open_files,
    part10,
    read_pdu_type,
    report,
    settle,
    store_files,
    threads,
)

pytestmark = pytest.mark.reliability

ACSE_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("hostile"), RADTRIAGE_DICOM_ACSE_TIMEOUT=str(ACSE_TIMEOUT),
                RADTRIAGE_DICOM_NETWORK_TIMEOUT="10", RADTRIAGE_DICOM_DIMSE_TIMEOUT="10") as running:
        yield running


# Threads and open files may differ by this much from their level before: a database
# connection pool or a log file opened on first use is not a leak.
SLACK = 3


def warm_up(daemon) -> None:
    """Store a few instances on parallel associations, so pools are as full as they get."""
    from dicom.scu import send_datasets

    pushes = [threading.Thread(target=send_datasets, args=("127.0.0.1", daemon.dicom_port, "RADTRIAGE", f"WARM{i}",
                                                            [radiograph(size=16, seed=9000 + 4 * i + j) for j in range(4)]))
              for i in range(4)]
    for push in pushes:
        push.start()
    for push in pushes:
        push.join(60)
    time.sleep(1)


def levels(daemon) -> tuple[int, int]:
    pids = listener_pids(daemon.proc.pid)
    return sum(threads(pid) for pid in pids), sum(open_files(pid) for pid in pids)


# --- Mutants ----------------------------------------------------------------------------------

def base(seed: int, **changes) -> Dataset:
    ds = radiograph(size=16, seed=seed)
    for keyword, value in changes.items():
        if value is None:
            del ds[keyword]
        else:
            setattr(ds, keyword, value)
    return ds


_PLACEHOLDER = "777777777777"  # an IS value pydicom accepts, replaced by one it would refuse to write


def _raw_value(data: bytes, value) -> bytes:
    if not isinstance(value, str):
        return data
    return data.replace(_PLACEHOLDER.encode(), value.encode().ljust(len(_PLACEHOLDER)), 1)


def nested_sequence(depth: int) -> bytes:
    """A private SQ nested ``depth`` deep, undefined lengths throughout (explicit VR LE)."""
    sq_open = b"\x09\x00\x01\x10SQ\x00\x00\xff\xff\xff\xff"
    item_open = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    item_close = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    sq_close = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return (sq_open + item_open) * depth + (item_close + sq_close) * depth


def mutants(rng: random.Random) -> list[tuple[str, bytes]]:
    """(kind, Part 10 bytes) of every mutant; each kind at least a few times."""
    found: list[tuple[str, bytes]] = []

    def add(kind: str, ds: Dataset | None = None, *, data: bytes | None = None, syntax=ExplicitVRLittleEndian,
            claimed=None) -> None:
        data = data if data is not None else encode(ds, syntax)
        uid = str(ds.SOPInstanceUID) if ds is not None and "SOPInstanceUID" in ds else None
        found.append((kind, part10(data, claimed_syntax=claimed or syntax, sop_instance=uid)))

    for i in range(70):  # truncations: in the header, or in the pixels
        data = encode(base(i), ExplicitVRLittleEndian)
        add("truncated", data=data[: rng.randrange(1, len(data))])
    for i in range(50):  # random bytes changed in the header
        data = bytearray(encode(base(100 + i), ExplicitVRLittleEndian))
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(0, 300)] = rng.randrange(256)
        add("flipped", data=bytes(data))
    wrong_vrs = [b"XX", b"SQ", b"OB", b"UN", b"\x00\x00", b"UT"]
    for i, (tag, vr) in enumerate([(b"\x10\x00\x10\x00", b"PN"), (b"\x28\x00\x10\x00", b"US"),
                                   (b"\x28\x00\x11\x00", b"US"), (b"\x28\x00\x00\x01", b"US"),
                                   (b"\x20\x00\x0d\x00", b"UI"), (b"\x08\x00\x16\x00", b"UI"),
                                   (b"\xe0\x7f\x10\x00", b"OW")]):
        for other in wrong_vrs:
            data = encode(base(200 + i), ExplicitVRLittleEndian)
            add("wrong VR", data=data.replace(tag + vr, tag + other, 1))
    for n, (keyword, value) in enumerate([(k, v) for k in ("Rows", "Columns") for v in (1, 65535)]
                                         + [("BitsAllocated", v) for v in (7, 9, 64, 255)]
                                         + [("BitsStored", 40), ("HighBit", 40), ("SamplesPerPixel", 2),
                                            ("SamplesPerPixel", 9)]
                                         + [("NumberOfFrames", v) for v in ("0", "-1", "999999999", "abc")]):
        for copy in range(2):
            ds = base(300 + n * 2 + copy, **{keyword: _PLACEHOLDER if isinstance(value, str) else value})
            add("absurd dimensions", data=_raw_value(encode(ds, ExplicitVRLittleEndian), value))
    for n, size in enumerate((50 * 1024 * 1024, 50 * 1024 * 1024)):
        ds = base(400 + n)
        ds.add_new(0x00090010, "LO", "HOSTILE")
        ds.add_new(0x00091001, "OB" if n == 0 else "UN", bytes(size))
        add("50 MB private element", ds)
    for i in range(8):  # transfer syntax claims that lie
        ds = base(500 + i)
        add("implicit claimed explicit", data=encode(ds, ImplicitVRLittleEndian), claimed=ExplicitVRLittleEndian)
        add("explicit claimed implicit", data=encode(ds, ExplicitVRLittleEndian), claimed=ImplicitVRLittleEndian)
        add("little endian claimed big", data=encode(ds, ExplicitVRLittleEndian), claimed=ExplicitVRBigEndian)
        add("native claimed JPEG", data=encode(ds, ExplicitVRLittleEndian), claimed=JPEGBaseline8Bit)
        add("plain claimed deflated", data=encode(ds, ExplicitVRLittleEndian), claimed=DeflatedExplicitVRLittleEndian)
    for n, (keyword, value) in enumerate([(k, v) for k in ("StudyInstanceUID", "SeriesInstanceUID",
                                                          "SOPInstanceUID", "SOPClassUID")
                                          for v in (None, "", "not-a-uid", "1." + "2" * 70)]):
        add("missing UID", base(600 + n, **{keyword: value}))
    names = ["A" * 65536, "Ölçü^Çiğdem", "山田^太郎", "\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B", "NUL\x00IN^NAME",
             "=" * 300, "^" * 1000]
    for n, name in enumerate(names):
        for charset in (None, "ISO_IR 192"):
            ds = base(700 + n * 2 + (charset is not None))
            ds.PatientName = name
            if charset:
                ds.SpecificCharacterSet = charset
            add("huge or non-ASCII name", ds)
    for n, raw_name in enumerate((b"\xff\xfe\xfd", b"\xc3\x28", "Zoë".encode("latin-1"))):
        data = encode(base(720 + n, PatientName="XXXXXXXX", SpecificCharacterSet="ISO_IR 192"),
                      ExplicitVRLittleEndian)
        add("huge or non-ASCII name", data=data.replace(b"XXXXXXXX", raw_name.ljust(8, b" ")[:8], 1))
    for n, depth in enumerate((10, 100, 1000, 5000)):
        data = encode(base(800 + n), ExplicitVRLittleEndian)
        pixel = data.index(b"\xe0\x7f\x10\x00")
        add("deep sequence", data=data[:pixel] + nested_sequence(depth) + data[pixel:])
    for n, value in enumerate(("99999999999", "-5", "abc", "4294967296")):
        ds = base(900 + n, NumberOfStudyRelatedInstances=_PLACEHOLDER)
        add("NumberOfStudyRelatedInstances out of range", ds,
            data=_raw_value(encode(ds, ExplicitVRLittleEndian), value))
    while len(found) < 330:  # truncated after a few flipped bytes
        data = bytearray(encode(base(1000 + len(found)), ExplicitVRLittleEndian))
        data[rng.randrange(0, len(data))] = rng.randrange(256)
        add("flipped and truncated", data=bytes(data[: rng.randrange(1, len(data))]))
    return found


def test_broken_files_over_c_store_are_answered(daemon, request, tmp_path, samples):
    rng = random.Random(16)
    made = mutants(rng)
    paths, kinds = [], []
    for n, (kind, data) in enumerate(made):
        path = tmp_path / f"m{n:04d}.dcm"
        path.write_bytes(data)
        paths.append(path)
        kinds.append(kind)
    edge = sorted((samples / "edge").glob("*.dcm"))
    paths += edge
    kinds += ["edge sample"] * len(edge)
    warm_up(daemon)
    threads_before, files_before = levels(daemon)
    log_before = len(daemon.log().splitlines())
    started = time.monotonic()
    results = store_files(daemon.dicom_port, paths)
    seconds = time.monotonic() - started
    assert daemon.proc.poll() is None, "the daemon died"
    assert echo(daemon.dicom_port)
    by_kind: dict[str, dict] = {}
    for kind, result in zip(kinds, results, strict=False):
        label = f"0x{result:04X}" if isinstance(result, int) else result
        by_kind.setdefault(kind, {}).setdefault(label, 0)
        by_kind[kind][label] += 1
    # Every instance has an answer: a status, or its association's clean end.
    assert len(results) == len(paths)
    assert by_kind["absurd dimensions"].get("0xA900", 0) >= 8  # Bits Allocated 7/9 and the like
    assert set(by_kind["implicit claimed explicit"]) == {"0xC210"}
    assert set(by_kind["explicit claimed implicit"]) == {"0xC210"}
    assert set(by_kind["native claimed JPEG"]) == {"0xC210"}
    assert set(by_kind["NumberOfStudyRelatedInstances out of range"]) == {"0x0000"}
    thread_level = settle(lambda: levels(daemon)[0], threads_before, slack=SLACK)
    file_level = settle(lambda: levels(daemon)[1], files_before, slack=SLACK)
    log = daemon.log().splitlines()[log_before:]
    tracebacks = [line for line in log if "Traceback" in line]
    report(request, instances=len(paths), mutants=len(made), edge_files=len(edge), seconds=round(seconds, 1),
           answers=by_kind, threads=(threads_before, thread_level), open_files=(files_before, file_level),
           log_lines=len(log), tracebacks=len(tracebacks))
    assert not tracebacks
    assert thread_level <= threads_before + SLACK and file_level <= files_before + SLACK


# --- Raw PDU fuzzing --------------------------------------------------------------------------

def _send_and_wait(port: int, payload: bytes, host: str = "127.0.0.1", *, within: float = ACSE_TIMEOUT + 5) -> str:
    """Send ``payload`` and say how the listener ended it: answered (a PDU), closed, or still open."""
    sock = socket.socket()
    try:
        sock.bind((host, 0))
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall(payload)
        except OSError:
            return "closed"
        try:
            kind = read_pdu_type(sock, within)
        except TimeoutError:
            return "open"
        except OSError:
            return "closed"
        if kind is None:
            return "closed"
        if kind in (0x02, 0x03, 0x07):  # A-ASSOCIATE-AC, -RJ, A-ABORT
            return "answered"
        return "answered" if closed_by_peer(sock, within) else "open"
    finally:
        sock.close()


def _slow(port: int, outcome: list) -> None:
    """A valid A-ASSOCIATE-RQ, one byte every half second: cut off by the ACSE timeout."""
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    try:
        for byte in associate_rq():
            sock.sendall(bytes((byte,)))
            time.sleep(0.5)
    except OSError:
        pass
    outcome.append(time.monotonic() - started if closed_by_peer(sock, 5) else None)
    sock.close()


def test_raw_pdu_fuzzing_is_answered_or_cut_off(daemon, request):
    rng = random.Random(1608)
    port = daemon.dicom_port
    warm_up(daemon)
    threads_before, files_before = levels(daemon)
    log_before = len(daemon.log().splitlines())
    outcomes: dict[str, dict[str, int]] = {}

    # Peers wait in parallel (a partial PDU is only cut off after the ACSE timeout), each from
    # its own address so the per-host cap does not answer for the listener.
    sent: list[tuple[str, object]] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=48)

    def run(kind: str, payload: bytes) -> None:
        host = f"127.0.3.{len(sent) % 250 + 1}"
        sent.append((kind, pool.submit(_send_and_wait, port, payload, host)))

    slow: list = []
    slow_threads = [threading.Thread(target=_slow, args=(port, slow)) for _ in range(3)]
    for thread in slow_threads:
        thread.start()
    for _ in range(60):
        run("random bytes", rng.randbytes(rng.randrange(1, 4096)))
    valid = associate_rq()
    for _ in range(120):
        data = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        run("mutated A-ASSOCIATE-RQ", bytes(data[: rng.randrange(6, len(data) + 1)]))
    for pdu_type in range(1, 8):
        run("length 0xFFFFFFFF", bytes((pdu_type, 0)) + b"\xff\xff\xff\xff" + rng.randbytes(1000))
    for _ in range(10):
        run("P-DATA before association", b"\x04\x00\x00\x00\x00\x10" + bytes(16))
    for kind, future in sent:
        result = future.result(timeout=120)
        outcomes.setdefault(kind, {}).setdefault(result, 0)
        outcomes[kind][result] += 1
    pool.shutdown()
    # 200 simultaneous connections (from 50 addresses) asking for an association.
    results: list[str] = []
    crowd = [threading.Thread(target=lambda h=f"127.0.2.{i % 50 + 1}": results.append(_send_and_wait(port, valid, h)))
             for i in range(200)]
    for thread in crowd:
        thread.start()
    for thread in crowd + slow_threads:
        thread.join(60)
    outcomes["200 simultaneous"] = {r: results.count(r) for r in set(results)}
    assert daemon.proc.poll() is None, "the daemon died"
    assert echo(port)
    assert all(seconds is not None and seconds < ACSE_TIMEOUT + 2 for seconds in slow), slow
    assert all("open" not in answers for answers in outcomes.values()), outcomes
    thread_level = settle(lambda: levels(daemon)[0], threads_before, slack=SLACK)
    file_level = settle(lambda: levels(daemon)[1], files_before, slack=SLACK)
    log = daemon.log().splitlines()[log_before:]
    tracebacks = [line for line in log if "Traceback" in line]
    connections = sum(sum(v.values()) for v in outcomes.values()) + len(slow)
    report(request, connections=connections, outcomes=outcomes, slow_sender_cut_off_s=[round(s, 1) for s in slow],
           threads=(threads_before, thread_level), open_files=(files_before, file_level), log_lines=len(log),
           tracebacks=len(tracebacks))
    assert not tracebacks
    assert len(log) <= 2 * connections  # one line per peer error at most (two with a summary)
    assert thread_level <= threads_before + SLACK and file_level <= files_before + SLACK
