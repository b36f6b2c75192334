"""Writing a received file past the page cache (``O_DIRECT``), falling back to a plain write.

A buffered write puts every new file into the page cache, which nothing here reads again,
so each 10 MB radiograph takes 2,500 new pages. On a virtual machine those are mostly
memory the guest has not touched lately, and storing one cost 16-20 ms of CPU, the largest
single cost of taking an instance in; written with ``O_DIRECT`` from a reused, page-aligned
buffer the same file cost 7 ms, hash included (``benchmarks/store.py``), and the whole
listener half the machine's CPU per instance (``benchmarks/ingest.py``). The device reads
the buffer and fsync is left with the metadata and the cache flush, so the file is as
durable as before. The pieces are copied into the buffer a chunk at a time, so memory stays
a few chunks per process however large the file.

Filesystems or platforms without ``O_DIRECT`` get the plain buffered write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
from collections.abc import Sequence

# The alignment O_DIRECT needs on Linux: a multiple of the logical block size (512 or
# 4096 bytes) for offsets, lengths and the buffer's address. A page covers both.
BLOCK = 4096
CHUNK = 4 * 1024 * 1024
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class _ChunkPool:
    """Page-aligned buffers reused across writes: new anonymous memory costs a page fault
    per page the first time it is touched, about as much as the buffered write it replaces."""

    def __init__(self, keep: int = 4) -> None:
        self._free: list[mmap.mmap] = []
        self._keep = keep
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def chunk(self):
        with self._lock:
            buffer = self._free.pop() if self._free else None
        if buffer is None:
            buffer = mmap.mmap(-1, CHUNK)
        try:
            yield buffer
        finally:
            with self._lock:
                if len(self._free) < self._keep:
                    self._free.append(buffer)
                    buffer = None
            if buffer is not None:
                buffer.close()


_POOL = _ChunkPool()


def write_file(fd: int, parts: Sequence[bytes | bytearray | memoryview], size: int) -> None:
    """Write ``parts`` (``size`` bytes in all) to the empty file ``fd``, bypassing the page
    cache where the filesystem allows. The caller still fsyncs."""
    if size and _set_direct(fd, True):
        try:
            _write_direct(fd, parts, size)
            return
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: this filesystem's alignment rules differ
                raise
            _set_direct(fd, False)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
    for part in parts:
        _write_all(fd, memoryview(part))


def _set_direct(fd: int, on: bool) -> bool:
    if not _O_DIRECT:
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | _O_DIRECT) if on else (flags & ~_O_DIRECT))
    except OSError:
        return False  # the filesystem has no O_DIRECT
    return True


def _write_direct(fd: int, parts: Sequence[bytes | bytearray | memoryview], size: int) -> None:
    with _POOL.chunk() as chunk, memoryview(chunk) as out:
        filled = 0
        for part in parts:
            with memoryview(part).cast("B") as view:
                offset = 0
                while offset < len(view):
                    count = min(len(view) - offset, CHUNK - filled)
                    out[filled:filled + count] = view[offset:offset + count]
                    filled += count
                    offset += count
                    if filled == CHUNK:
                        _write_all(fd, out)
                        filled = 0
        if filled:
            # The last block is written whole, then cut to size. Its slack is zeroed first:
            # it would otherwise carry bytes of an earlier image onto the disk.
            padded = -(-filled // BLOCK) * BLOCK
            out[filled:padded] = bytes(padded - filled)
            _write_all(fd, out[:padded])
    os.ftruncate(fd, size)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]
