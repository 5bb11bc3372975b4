"""Every word piece's encoder row, computed once per machine and read from disk when a piece is new.

Why: the sentence encoder caches, per word piece, everything that depends on that piece alone (see
embeddings.py). A piece the process has not met yet costs ~5.4 MB of weight reads, about 0.3-0.8 ms when the
weights have left the CPU caches: that was the classifier's p99 (issue 3), and keeping thousands of such rows
in every web process was a good part of its memory (issue 9). This file holds the row of each of the
vocabulary's 128,000 pieces in float16 (7.9 KB a piece, ~1 GB), computed in ~10 s of CPU by a background
child process; a new piece is then one `pread` from the page cache (~10 us), shared by every process on the
machine and outside their resident memory. Until the file exists (the first minute after installing), new
pieces are computed as before.

The rows are stored in float16 except the two layer-norm statistics of the raw embedding (float32). The
encoder rounds the rows it computes itself the same way, so a piece's vector does not depend on where its
row came from. Measured on CLINC150: the same in-scope accuracy and out-of-scope recall as float32 rows.

The file lives in `FRONTOFFICE_ENCODER_CACHE`, else `$XDG_CACHE_HOME/frontoffice`, else
`~/.cache/frontoffice` (on disk: /tmp is often memory). `FRONTOFFICE_ENCODER_TABLE=off` turns it off.
Its name carries the weights file's size and time and LAYOUT_VERSION: bump that when the row computation
changes, and old files are simply not used.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1
_MAGIC = b"FOPIECE1"
_HEADER = struct.Struct("<8sIII")  # magic, rows, float16 columns, float32 columns
_HEADER_BYTES = 64  # rows start at a round offset
_BUILD_BATCH = 512  # pieces per product while building: measured fastest (512: 8.7 s, 2048: 12 s in all)
_FREE_SPACE_MARGIN = 512 * 1024 * 1024  # never fill a disk to the brim for a cache
_RECHECK_SECONDS = 5.0
_PREFETCH_STEP = 4 << 20  # bytes per read-ahead request: one POSIX_FADV_WILLNEED reads at most ~2-8 MB at a time


def row_dtype(half_columns: int, float_columns: int) -> np.dtype:
    return np.dtype([("half", "<f2", (half_columns,)), ("single", "<f4", (float_columns,))])


def enabled() -> bool:
    return os.environ.get("FRONTOFFICE_ENCODER_TABLE", "on").strip().lower() not in ("off", "0", "no", "false")


def default_folder() -> Path:
    explicit = os.environ.get("FRONTOFFICE_ENCODER_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "frontoffice"


def table_path(folder: Path, weights_path: str | os.PathLike[str], encoder_name: str) -> Path:
    stat = os.stat(weights_path)
    return folder / f"{encoder_name}-pieces-v{LAYOUT_VERSION}-{stat.st_size}-{int(stat.st_mtime)}.bin"


class PieceTable:
    """An open table file: `read(ids)` -> (len(ids), half + single columns) float32 rows."""

    def __init__(self, path: Path, half_columns: int, float_columns: int) -> None:
        self._dtype = row_dtype(half_columns, float_columns)
        self._columns = half_columns + float_columns
        fd = os.open(path, os.O_RDONLY)
        try:
            header = os.pread(fd, _HEADER.size, 0)
            if len(header) != _HEADER.size:
                raise ValueError("file shorter than its header")
            magic, rows, halves, singles = _HEADER.unpack(header)
            if magic != _MAGIC or (halves, singles) != (half_columns, float_columns):
                raise ValueError(f"not a piece table of this layout ({magic!r}, {halves}, {singles})")
            if os.fstat(fd).st_size != _HEADER_BYTES + rows * self._dtype.itemsize:
                raise ValueError("file size does not match its header (truncated?)")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.rows = rows
        self.path = path

    def read(self, ids: Sequence[int]) -> np.ndarray:
        size = self._dtype.itemsize
        buffer = bytearray(size * len(ids))
        view = memoryview(buffer)
        for i, piece in enumerate(ids):
            if not 0 <= piece < self.rows:
                raise IndexError(f"word piece {piece} is outside the piece table")
            if os.preadv(self._fd, [view[i * size:(i + 1) * size]], _HEADER_BYTES + piece * size) != size:
                raise OSError(f"piece table {self.path} ended early at row {piece}")
        records = np.frombuffer(buffer, dtype=self._dtype)
        out = np.empty((len(ids), self._columns), dtype=np.float32)
        half = self._dtype["half"].shape[0]
        out[:, :half] = records["half"]
        out[:, half:] = records["single"]
        return out

    def prefetch(self) -> None:
        """Ask the kernel to bring the whole file into the page cache.

        Why: a row costs ~10 us from the page cache but ~90 us from disk (measured on the project's machine,
        where a freshly written table was only 10% resident). The kernel does the reading: nothing is copied
        into this process, and the pages stay shared and reclaimable. One WILLNEED for the whole file reads
        just a few MB, so it is asked for in 4 MB steps (~0.3 s for 1 GB from disk, ~25 ms when cached)."""
        if not hasattr(os, "posix_fadvise") or self._fd < 0:
            return
        fd, size = self._fd, _HEADER_BYTES + self.rows * self._dtype.itemsize
        try:
            for offset in range(0, size, _PREFETCH_STEP):
                if self._fd != fd:
                    return  # closed meanwhile
                os.posix_fadvise(fd, offset, _PREFETCH_STEP, os.POSIX_FADV_WILLNEED)
        except OSError as exc:  # only a hint: reads still work without it
            log.debug("piece table prefetch stopped: %s", exc)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)


class PieceTableSource:
    """The table for an encoder once its file exists: looked for again at most every few seconds, so the
    processes started before the background build finished pick the file up without a restart."""

    def __init__(self, path: Path, half_columns: int, float_columns: int) -> None:
        self.path = path
        self._columns = (half_columns, float_columns)
        self._table: PieceTable | None = None
        self._next_look = 0.0

    def get(self) -> PieceTable | None:
        if self._table is None and time.monotonic() >= self._next_look:
            self._next_look = time.monotonic() + _RECHECK_SECONDS
            if self.path.is_file():
                try:
                    self._table = PieceTable(self.path, *self._columns)
                except (OSError, ValueError) as exc:
                    log.warning("cannot use the encoder's piece table %s (%s)", self.path, exc)
                else:
                    # in the background: opening happens on a request's path (its first new piece)
                    threading.Thread(target=self._table.prefetch, name="piece-table-prefetch", daemon=True).start()
        return self._table


def build(path: Path, vocabulary: int, half_columns: int, float_columns: int,
          compute_rows: Callable[[Sequence[int]], np.ndarray]) -> bool:
    """Write the table of pieces 0..vocabulary-1 atomically. One builder at a time per file (a lock file):
    returns False when another process holds the lock, True when the file exists. OSError when the disk has
    no room for it (or any other I/O error); nothing partial is left behind."""
    if path.is_file():
        return True
    dtype = row_dtype(half_columns, float_columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    needed = _HEADER_BYTES + vocabulary * dtype.itemsize
    if shutil.disk_usage(path.parent).free < needed + _FREE_SPACE_MARGIN:
        raise OSError(f"not enough free space in {path.parent} for the piece table ({needed >> 20} MB)")
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # another process is building it
        if path.is_file():  # finished by the holder we just waited for
            return True
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            with open(partial, "wb") as out:
                out.write(_HEADER.pack(_MAGIC, vocabulary, half_columns, float_columns).ljust(_HEADER_BYTES, b"\0"))
                records = np.empty(_BUILD_BATCH, dtype=dtype)
                for start in range(0, vocabulary, _BUILD_BATCH):
                    ids = list(range(start, min(start + _BUILD_BATCH, vocabulary)))
                    rows = compute_rows(ids)
                    chunk = records[:len(ids)]
                    chunk["half"] = rows[:, :half_columns]
                    chunk["single"] = rows[:, half_columns:]
                    out.write(chunk.tobytes())
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)  # readers never see a half-written file
        finally:
            if partial.exists():
                partial.unlink()
        _remove_superseded(path)
    return True


def _remove_superseded(path: Path) -> None:
    """Tables of an older layout or of replaced weights (a package upgrade) are ~1 GB each: remove them once
    their successor exists. A process still reading one keeps its open file until it exits."""
    encoder_name = path.name.split("-pieces-v", 1)[0]
    for other in path.parent.glob(f"{encoder_name}-pieces-v*.bin"):
        if other != path:
            try:
                other.unlink()
                log.info("removed the superseded piece table %s", other)
            except OSError as exc:
                log.warning("cannot remove the superseded piece table %s (%s)", other, exc)


def start_background_build() -> subprocess.Popen[bytes] | None:
    """Build the default encoder's table in a child process at low priority (the caller does not wait)."""
    try:
        # one BLAS thread: the build must not take both cores from the service
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        return subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError as exc:
        log.warning("cannot start building the encoder's piece table (%s)", exc)
        return None


def _child_main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s piece-table: %(message)s")
    try:
        os.nice(10)  # serving comes first; this is a cache
    except OSError:
        pass
    from .embeddings import build_default_piece_table

    started = time.monotonic()
    path = build_default_piece_table(wait=False)
    if path is not None:
        log.info("encoder piece table at %s ready after %.1f s", path, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main())
