"""OpenMP threads per search, set on the thread that searches.

OpenMP keeps its thread count per thread: ``faiss.omp_set_num_threads`` called once at start
reaches only the calling thread, and gunicorn's request threads (created later, not by OpenMP)
would still search with one OpenMP thread per core, busy-waiting and fighting the other
requests for the same cores. So each searching thread sets it once, on its first search.
"""

from __future__ import annotations

import threading

import faiss

_local = threading.local()


def limit_threads(n: int) -> None:
    """Make FAISS calls on the current thread use at most ``n`` OpenMP threads (cheap after the
    first call on a thread)."""
    if getattr(_local, "threads", None) != n:
        faiss.omp_set_num_threads(n)
        _local.threads = n
