"""One math thread per process for code that works on a few rows at a time (the trainer).

OpenBLAS (under numpy) and torch start a thread per core and spin while they wait for work. For
small products (a micro-batch's users against the catalogue) the hand-off costs more than the
arithmetic, and on a busy machine the spinning threads starve the process itself: a
16 × 32 by 32 × 5,000 float32 product took 5.4 ms with the default threads and 0.3 ms with one
on the 2-core development machine. Processes scale by running more of them (consumer-group
members), not by threads.
"""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits


def one_math_thread() -> None:
    """Limit BLAS (numpy) and torch to one thread each, for the rest of the process."""
    torch.set_num_threads(1)
    threadpool_limits(limits=1)
