"""scripts.process_cpu: a root's descendants count under it, unless they are roots themselves."""

from __future__ import annotations

import os
import subprocess
import sys

from scripts import process_cpu

BURN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"


def test_a_child_that_is_a_root_itself_is_counted_once_under_its_own_name() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN + "input()"], stdin=subprocess.PIPE)
    try:
        roots = {"parent": os.getpid(), "child": child.pid}
        before = process_cpu.sample({"parent": os.getpid()})
        nested_before = process_cpu.sample(roots)
        while process_cpu.sample({"child": child.pid}).by_name["child"] < 0.4:
            pass  # the parent burns CPU too while it waits
        whole = process_cpu.used(before, process_cpu.sample({"parent": os.getpid()}))
        split = process_cpu.used(nested_before, process_cpu.sample(roots))
    finally:
        child.communicate(b"\n", timeout=10)
    assert split["child"] >= 0.3
    # Without the child as a root the parent's figure holds the child's seconds; with it, not.
    assert whole["parent"] >= split["parent"] + 0.3
