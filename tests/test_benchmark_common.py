"""experiments/benchmarks/common.py: the machine description and the page-fault counter
that the benchmarks print beside their figures."""

from __future__ import annotations

import mmap
import sys

import pytest

from experiments.benchmarks import common


def test_machine_names_cpu_cores_and_load():
    info = common.machine()
    assert info["cores"] >= 1 and isinstance(info["cpu"], str) and info["cpu"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_minflt is Linux's")
def test_minor_page_faults_count_pages_touched_for_the_first_time():
    size = 32 * 2**20
    before = common.minor_page_faults()
    with mmap.mmap(-1, size) as fresh:  # anonymous: no page is mapped until written
        for offset in range(0, size, mmap.PAGESIZE):
            fresh[offset] = 1
        after = common.minor_page_faults()
    # One fault per 4 KiB page, or per 2 MiB where the kernel backs it with huge pages.
    assert after - before >= size // (2 * 2**20)
    assert common.minor_page_faults() >= after
