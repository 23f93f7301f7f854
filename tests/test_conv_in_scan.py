"""experiments/benchmarks/conv_in_scan.py --kernel_gradient_shapes: both forms of conv_same's
kernel gradient are timed (after checking they agree) and the one ops picks is named."""

from __future__ import annotations

import json

from experiments.benchmarks import conv_in_scan


def test_times_both_kernel_gradient_forms_and_names_the_picked_one(capsys):
    conv_in_scan.main(["--kernel_gradient_shapes", "2,4,4,6,3", "2,4,4,3,6", "--layers=2",
                       "--repeats=1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["shape"] for line in lines] == [[2, 4, 4, 6, 3], [2, 4, 4, 3, 6]]
    assert [line["picked"] for line in lines] == ["conv", "products"]
    assert all(line["conv_ms"] > 0 and line["products_ms"] > 0 for line in lines)
