"""Keep BLAS single-threaded while we compute.

Our matrix products are small (one request, or a few hundred tokens): on a
2-core machine OpenBLAS's thread hand-off costs far more than it saves (measured
10-30x slower per request), and a bot process serves requests concurrently anyway.

main.py sets OPENBLAS_NUM_THREADS=1 before numpy loads, so a service process never starts BLAS worker
threads. A process that imports the classifier some other way (tests, benchmarks, a notebook) gets its
BLAS libraries set to one thread on first use, for good: switching to one thread around every query and
back (threadpoolctl's limit()) cost 50-100 us a query, and the restored idle workers spun on the other
core (CLINC p50 1.36 ms instead of 0.71 ms).
"""

from __future__ import annotations

import contextlib
import logging
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_settled = False


def _one_thread_for_good() -> None:
    global _settled
    with _lock:
        if _settled:
            return
        _settled = True
        try:
            from threadpoolctl import ThreadpoolController

            libraries = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
        except Exception:  # threadpoolctl missing or unable to inspect: run as is
            return
        for lib in libraries:
            if lib.get_num_threads() != 1:
                log.debug("%s: %d BLAS threads -> 1 for this process", lib.filepath, lib.get_num_threads())
                lib.set_num_threads(1)


def single_blas_thread() -> contextlib.AbstractContextManager[None]:
    """A context for BLAS work; after the first call the process's BLAS runs on one thread."""
    if not _settled:
        _one_thread_for_good()
    return contextlib.nullcontext()
