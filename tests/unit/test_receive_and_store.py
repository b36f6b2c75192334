"""The listener's receive and store primitives: whole PDUs from the socket, files from pieces."""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import socket
import threading
import types

import blake3
import pytest

from dicom import direct_write
from dicom.netseam.transport import BulkReadSocket, _pdv_items
from dicom.storage import content_hash, store_bytes
from tests.conftest import need


def _bulk_socket(sock: socket.socket) -> BulkReadSocket:
    assoc = types.SimpleNamespace(dul=types.SimpleNamespace(event_queue=queue.Queue()))
    return BulkReadSocket(assoc, client_socket=sock)


def test_a_pdu_sent_in_many_pieces_is_read_whole():
    ours, theirs = socket.socketpair()
    payload = bytes(range(256)) * 40_000  # 10 MB, more than any socket buffer
    sender = threading.Thread(target=lambda: [theirs.sendall(payload[i:i + 7777]) for i in range(0, len(payload), 7777)])
    sender.start()
    try:
        assert _bulk_socket(ours).recv(len(payload)) == payload
    finally:
        sender.join()
        ours.close()
        theirs.close()


def test_a_connection_closed_mid_pdu_gives_what_arrived():
    ours, theirs = socket.socketpair()
    theirs.sendall(b"partial")
    theirs.close()
    try:
        assert _bulk_socket(ours).recv(100) == b"partial"  # pynetdicom sees the short PDU and aborts
    finally:
        ours.close()


def test_a_file_stored_from_pieces_is_the_pieces_joined(tmp_path):
    head, body = b"\x00" * 128 + b"DICM" + b"meta", bytearray(b"dataset" * 1000)
    with memoryview(body) as view:
        stored = store_bytes(tmp_path, (head, view))
    whole = head + bytes(body)
    assert (tmp_path / stored.relative_path).read_bytes() == whole
    assert stored.content_hash == "blake3:" + blake3.blake3(whole).hexdigest() == content_hash(whole)
    assert stored.relative_path.endswith(blake3.blake3(whole).hexdigest() + ".dcm")
    assert stored.size_bytes == len(whole) and stored.created
    assert not store_bytes(tmp_path, whole).created  # identical bytes, however they arrive, are one file


@pytest.mark.parametrize("kept", [4, 0])  # 0: every write buffer is unmapped after use
@pytest.mark.parametrize("sizes", [(132, 5000, 3), (132, 16384), (132, 8192 * 3 + 1, 0, 77), (1,)])
def test_pieces_crossing_write_chunks_are_stored_exactly(tmp_path, monkeypatch, sizes, kept):
    monkeypatch.setattr(direct_write, "CHUNK", 8192)  # so small files cross chunk and block boundaries
    monkeypatch.setattr(direct_write, "_POOL", direct_write._ChunkPool(keep=kept))
    parts = [bytes((i * 7 + n) % 251 for i in range(n)) for n in sizes]
    stored = store_bytes(tmp_path, [parts[0], *map(memoryview, parts[1:])])
    assert (tmp_path / stored.relative_path).read_bytes() == b"".join(parts)
    assert stored.size_bytes == sum(sizes)


def _supports_direct_io(folder) -> bool:
    fd = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        return direct_write._set_direct(fd, True)
    finally:
        os.close(fd)
        os.unlink(folder / "probe")


def test_files_bypass_the_page_cache_where_the_filesystem_allows(tmp_path, monkeypatch):
    need(_supports_direct_io(tmp_path), "a filesystem with O_DIRECT for the tests' temporary files")
    flags = []
    write_direct = direct_write._write_direct

    def spy(fd, parts, size):
        flags.append(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        write_direct(fd, parts, size)

    monkeypatch.setattr(direct_write, "_write_direct", spy)
    stored = store_bytes(tmp_path, (b"head", b"dataset" * 3000))
    assert flags and all(flags), "written through the page cache"
    assert (tmp_path / stored.relative_path).read_bytes() == b"head" + b"dataset" * 3000


def test_the_last_block_carries_no_bytes_of_an_earlier_file(tmp_path, monkeypatch):
    need(_supports_direct_io(tmp_path), "a filesystem with O_DIRECT for the tests' temporary files")
    monkeypatch.setattr(direct_write, "_POOL", direct_write._ChunkPool(keep=1))  # the same buffer both times
    store_bytes(tmp_path, b"\xff" * 3 * direct_write.BLOCK)  # an earlier image leaves the buffer full of 0xFF
    monkeypatch.setattr(direct_write.os, "ftruncate", lambda fd, size: None)  # keep the whole last block
    stored = store_bytes(tmp_path, b"\x01" * 100)
    assert (tmp_path / stored.relative_path).read_bytes() == b"\x01" * 100 + bytes(direct_write.BLOCK - 100)


def test_without_direct_io_the_file_is_written_through_the_page_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(direct_write, "_O_DIRECT", 0)  # a platform without O_DIRECT
    stored = store_bytes(tmp_path, (b"head", b"dataset" * 3000))
    assert (tmp_path / stored.relative_path).read_bytes() == b"head" + b"dataset" * 3000


def test_a_filesystem_refusing_aligned_writes_gets_a_plain_write(tmp_path, monkeypatch):
    written = []

    def refuse(fd, parts, size):  # as a filesystem with stricter alignment: some bytes, then EINVAL
        written.append(size)
        os.write(fd, b"\x00" * direct_write.BLOCK)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(direct_write, "_write_direct", refuse)
    stored = store_bytes(tmp_path, (b"head", b"dataset" * 3000))
    assert written and (tmp_path / stored.relative_path).read_bytes() == b"head" + b"dataset" * 3000


def test_a_failed_direct_write_leaves_no_file(tmp_path, monkeypatch):
    def fail(fd, parts, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_write, "_write_direct", fail)
    with pytest.raises(OSError):
        store_bytes(tmp_path, (b"head", b"dataset"))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_p_data_items_are_read_as_views_of_the_pdu():
    fragment = b"\x02" + b"pixel bytes" * 100  # last data fragment: control header 0b10
    command = b"\x03" + b"command"
    items = b"".join(len(v := bytes([ctx]) + body).to_bytes(4, "big") + v for ctx, body in ((1, command), (3, fragment)))
    parsed = list(_pdv_items(memoryview(bytearray(items))))
    assert [(i.presentation_context_id, bytes(i.presentation_data_value)) for i in parsed] == [(1, command), (3, fragment)]
    assert all(isinstance(i.presentation_data_value, memoryview) for i in parsed)


def test_a_p_data_item_longer_than_its_pdu_is_an_invalid_pdu():
    with pytest.raises(ValueError):
        list(_pdv_items(memoryview(b"\x00\x00\x00\x09\x01\x02abc")))
    with pytest.raises(ValueError):
        list(_pdv_items(memoryview(b"\x00\x00\x00")))


def test_files_with_the_same_hash_are_locked_across_processes(tmp_path):
    import subprocess
    import sys
    import time

    from dicom.storage import content_lock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from dicom.storage import content_lock\n"
        "with content_lock(Path(sys.argv[1]), 'blake3:ab12'):\n"
        "    print('held', flush=True); time.sleep(1.0)\n"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with content_lock(tmp_path, "blake3:ab99"):  # same stripe (first byte "ab")
            waited = time.monotonic() - started
        assert waited > 0.5, "another process's lock was not waited for"
    finally:
        holder.wait(10)
