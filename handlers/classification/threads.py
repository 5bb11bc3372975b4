"""Keep BLAS single-threaded while we compute.

Our matrix products are small (one request, or a few hundred tokens): on a
2-core machine OpenBLAS's thread hand-off costs far more than it saves (measured
10-30x slower per request), and a bot process serves requests concurrently anyway.
"""

from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_controller = None


def _get_controller():
    global _controller
    with _lock:
        if _controller is None:
            try:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            except Exception:  # threadpoolctl missing or unable to inspect: run as is
                _controller = False
        return _controller


def single_blas_thread():
    controller = _get_controller()
    if not controller:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")
