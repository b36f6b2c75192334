"""Shared pieces of the reliability suite: what a process holds (from /proc) and how figures are reported.

Every reliability test reports what it measured through :func:`report`: one line per figure on
the terminal (whether or not pytest captures output) and in ``reliability-figures.jsonl``
under pytest's base temporary folder, so a CI run keeps them.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config

from tests.factories import DX


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (none once it has ended)."""
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children(current)
    return tree


def echo(port: int, *, host: str = "127.0.0.1", timeout: float = 10.0) -> bool:
    """Whether a C-ECHO from ``host`` (a loopback source address) succeeds within ``timeout``."""
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="ECHOSCU")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    assoc = ae.associate("127.0.0.1", port, ae_title="RADTRIAGE", bind_address=(host, 0))
    if not assoc.is_established:
        return False
    try:
        return assoc.send_c_echo().Status == 0
    finally:
        assoc.release()


def percentile(values: Iterable[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def settle(measure: Callable[[], int], target: int, *, slack: int = 0, seconds: float = 15.0) -> int:
    """Wait until ``measure()`` is back within ``slack`` of ``target``; returns the last value."""
    deadline = time.monotonic() + seconds
    value = measure()
    while value > target + slack and time.monotonic() < deadline:
        time.sleep(0.2)
        value = measure()
    return value


def report(request: pytest.FixtureRequest, **figures) -> None:
    """Print the figures a test measured, to the terminal even under capture, and keep them in a file."""
    name = request.node.name
    line = f"[reliability] {name}: " + ", ".join(f"{key}={_fmt(value)}" for key, value in figures.items())
    print(line)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        # The reporter writes to the captured stdout while a test runs: let the line through.
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(line)
    base = request.config._tmp_path_factory.getbasetemp()  # pytest's base temporary folder
    with open(Path(base) / "reliability-figures.jsonl", "a") as out:
        out.write(json.dumps({"test": name, **figures}, default=str) + "\n")


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# --- Raw DICOM upper layer (PS3.8 9.3), for peers no real SCU would be ---------------------------

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
RELEASE_RQ = bytes((0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0))


def _item(kind: int, value: bytes) -> bytes:
    return bytes((kind, 0)) + len(value).to_bytes(2, "big") + value


def associate_rq(called: str = "RADTRIAGE", calling: str = "RAWPEER", abstract: str = VERIFICATION,
                 max_pdu: int = 16384) -> bytes:
    """An A-ASSOCIATE-RQ proposing one presentation context (``abstract`` in Implicit VR LE)."""
    context = bytes((1, 0, 0, 0)) + _item(0x30, abstract.encode()) + _item(0x40, IMPLICIT_LE.encode())
    user = _item(0x51, max_pdu.to_bytes(4, "big")) + _item(0x52, b"1.2.826.0.1.3680043.9.7433.9")
    body = (b"\x00\x01\x00\x00" + called.encode().ljust(16) + calling.encode().ljust(16) + bytes(32)
            + _item(0x10, _APPLICATION_CONTEXT.encode()) + _item(0x20, context) + _item(0x50, user))
    return bytes((0x01, 0)) + len(body).to_bytes(4, "big") + body


def read_pdu_type(sock, timeout: float = 10.0) -> int | None:
    """The type of the next PDU the peer sends (its body is read and dropped); None when it closed."""
    sock.settimeout(timeout)
    header = _read(sock, 6)
    if len(header) < 6:
        return None
    _read(sock, int.from_bytes(header[2:6], "big"))
    return header[0]


def _read(sock, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(min(count - len(data), 1 << 16))
        if not chunk:
            break
        data += chunk
    return data


def closed_by_peer(sock, within: float) -> bool:
    """Whether the listener closed (or reset) ``sock`` within ``within`` seconds; anything it sends is read."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def listener_pids(serve_pid: int) -> list[int]:
    """The accepting ``serve`` process and its listener member processes."""
    found = [serve_pid]
    for pid in process_tree(serve_pid)[1:]:
        try:
            if b"listener_member" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


# --- Files sent as stored, whatever they hold --------------------------------------------------

ABORTED = "aborted"  # the association ended before this instance was answered


def encode(ds: Dataset, syntax: str) -> bytes:
    """``ds`` without file meta, in ``syntax`` (implicit or explicit VR, little or big endian)."""
    out = DicomBytesIO()
    out.is_little_endian = syntax != ExplicitVRBigEndian
    out.is_implicit_VR = syntax == ImplicitVRLittleEndian
    write_dataset(out, ds)
    return out.getvalue()


def part10(dataset: bytes, *, claimed_syntax: str, sop_class: str = DX, sop_instance: str | None = None) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance or generate_uid()
    meta.TransferSyntaxUID = claimed_syntax
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_file_meta_info(out, meta)
    return b"\x00" * 128 + b"DICM" + out.getvalue() + dataset


def store_files(port: int, paths: list[Path]) -> list[int | str]:
    """C-STORE each file as stored (chunked, never decoded here); a status or ``ABORTED`` each."""
    results: list[int | str] = []
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        index = 0
        while index < len(paths):
            ae = AE(ae_title="FUZZSCU")
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
            batch = paths[index:index + 40]
            contexts = sorted({_context(path) for path in batch} - {None})
            for sop_class, syntax in contexts[:120]:
                ae.add_requested_context(sop_class, syntax)
            assoc = ae.associate("127.0.0.1", port, ae_title="RADTRIAGE")
            assert assoc.is_established, "the listener refused a fresh association"
            try:
                for path in batch:
                    index += 1
                    if not assoc.is_established:
                        results.append(ABORTED)
                        break
                    try:
                        response = assoc.send_c_store(path)
                    except Exception as exc:  # noqa: BLE001 - a file pynetdicom cannot even send
                        results.append(f"not sent ({type(exc).__name__})")
                        continue
                    results.append(int(response.Status) if "Status" in response else ABORTED)
            finally:
                if assoc.is_established:
                    assoc.release()
                ae.shutdown()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
    return results


def _context(path: Path):
    from pydicom.filereader import read_file_meta_info

    try:
        meta = read_file_meta_info(path)
        return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
    except Exception:  # noqa: BLE001 - an edge file without usable meta
        return None
