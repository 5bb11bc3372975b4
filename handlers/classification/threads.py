"""Keep BLAS single-threaded while we compute.

Our matrix products are small (one request, or a few hundred tokens): on a
2-core machine OpenBLAS's thread hand-off costs far more than it saves (measured
10-30x slower per request), and a bot process serves requests concurrently anyway.
"""

from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_blas = None  # threadpoolctl controllers of the loaded BLAS libraries; [] when they cannot be inspected


def _blas_libraries() -> list:
    global _blas
    with _lock:
        if _blas is None:
            try:
                from threadpoolctl import ThreadpoolController

                _blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
            except Exception:  # threadpoolctl missing or unable to inspect: run as is
                _blas = []
        return _blas


class _OneThread:
    """Set each BLAS library to one thread and restore it after: one C call per library each way.
    threadpoolctl's limit() re-inspects every loaded library on each use (~10 us hot, 50-100 us
    measured inside the request loop), which is a tenth of a request."""

    def __init__(self, libraries: list) -> None:
        self._libraries = libraries
        self._previous: list[int] = []

    def __enter__(self) -> None:
        self._previous = [lib.get_num_threads() for lib in self._libraries]
        for lib, n in zip(self._libraries, self._previous, strict=True):
            if n != 1:
                lib.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        for lib, n in zip(self._libraries, self._previous, strict=True):
            if n != 1:
                lib.set_num_threads(n)


def single_blas_thread():
    libraries = _blas_libraries()
    if all(lib.get_num_threads() == 1 for lib in libraries):  # e.g. OPENBLAS_NUM_THREADS=1: nothing to do
        return contextlib.nullcontext()
    return _OneThread(libraries)
