"""experiments/benchmarks/port_comparison.py without torch: the port's two fixes go into a
copy (never the user's checkout), a checkout that does not match is refused with a message,
the summary's ratios are flowzoo over port, and flowzoo's worker splits the batch over
several CPU devices when asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from experiments.benchmarks import port_comparison

NN_PY = """class Attention:
    def forward(self, q):
        q *= key_depth_per_head ** -0.5
        return q

class Conv:
    def forward(self, weights):
        weights += self.bias
        return weights
"""


def _fake_port(root, nn_text=NN_PY):
    os.makedirs(root / "models" / "flowplusplus")
    os.makedirs(root / "util")
    (root / "models" / "flowplusplus" / "nn.py").write_text(nn_text)
    (root / "util" / "__init__.py").write_text("")
    return root


def test_the_port_is_fixed_in_a_copy_and_the_checkout_is_left_alone(tmp_path):
    port = _fake_port(tmp_path / "checkout")
    copy = port_comparison.prepare_port(str(port), str(tmp_path / "copy"))
    fixed = (tmp_path / "copy" / "models" / "flowplusplus" / "nn.py").read_text()
    assert "q = q * key_depth_per_head ** -0.5" in fixed
    assert "weights = weights + self.bias" in fixed
    assert "*=" not in fixed and "+=" not in fixed
    assert (port / "models" / "flowplusplus" / "nn.py").read_text() == NN_PY
    assert os.path.isdir(os.path.join(copy, "util"))


def test_a_checkout_without_the_lines_to_fix_is_refused(tmp_path):
    port = _fake_port(tmp_path / "checkout", NN_PY.replace("weights += self.bias", "pass"))
    with pytest.raises(SystemExit, match="weights \\+= self.bias"):
        port_comparison.prepare_port(str(port), str(tmp_path / "copy"))
    with pytest.raises(SystemExit, match="not a checkout of chrischute/flowplusplus"):
        port_comparison.prepare_port(str(tmp_path), str(tmp_path / "copy2"))


def test_summary_takes_medians_and_divides_flowzoo_by_port():
    runs = [{"impl": "port", "train_img_s": 0.5, "train_peak_rss_gib": 18.0,
             "sample_img_s": 4.0},
            {"impl": "port", "train_img_s": 0.4, "train_peak_rss_gib": 18.4,
             "sample_img_s": 4.4},
            {"impl": "flowzoo", "train_img_s": 1.2, "train_peak_rss_gib": 3.3,
             "sample_img_s": 6.0},
            {"impl": "flowzoo", "stopped": "resident memory passed --max_rss_gib=1.0"}]
    summary = port_comparison._summary(runs, 16)
    assert summary["port"]["train_img_s"] == pytest.approx(0.45)
    assert summary["flowzoo"]["runs"] == 1
    ratios = summary["ratios_flowzoo_over_port"]
    assert ratios["train_img_s"] == pytest.approx(1.2 / 0.45, abs=1e-3)
    assert ratios["sample_img_s"] == pytest.approx(6.0 / 4.2, abs=1e-3)
    assert ratios["train_peak_rss_gib"] == pytest.approx(3.3 / 18.2, abs=1e-3)


def test_summary_gives_each_compute_dtype_its_own_ratios():
    runs = [{"impl": "port", "train_img_s": 0.5, "train_peak_rss_gib": 18.0,
             "sample_img_s": 4.0},
            {"impl": "flowzoo", "train_img_s": 1.5, "train_peak_rss_gib": 3.3,
             "sample_img_s": 8.0},
            {"impl": "flowzoo-bfloat16", "train_img_s": 2.0, "train_peak_rss_gib": 3.1,
             "sample_img_s": 10.0}]
    summary = port_comparison._summary(runs, 16)
    assert summary["ratios_flowzoo_over_port"]["train_img_s"] == pytest.approx(3.0)
    bf16 = summary["ratios_flowzoo-bfloat16_over_port"]
    assert bf16["train_img_s"] == pytest.approx(4.0) and bf16["sample_img_s"] == 2.5


def test_each_dtype_and_device_count_is_its_own_implementation():
    assert port_comparison.impl_name("float32", 1) == "flowzoo"
    assert port_comparison.impl_name("bfloat16", 1) == "flowzoo-bfloat16"
    assert port_comparison.impl_name("float32", 2) == "flowzoo-2dev"
    assert port_comparison.impl_name("bfloat16", 2) == "flowzoo-bfloat16-2dev"


def test_auto_measures_the_launchers_device_count():
    counts = port_comparison.cpu_device_counts
    assert counts("auto", 16, "cpu", cores=2) == [2]
    assert counts("auto", 16, "cpu", cores=6) == [4]
    assert counts("auto", 15, "cpu", cores=2) == [1]
    assert counts("auto", 16, "gpu", cores=2) == [1]
    assert counts("1, 2", 16, "cpu") == [1, 2]
    for bad in ("1,3", "0", "two", ""):
        with pytest.raises(ValueError, match="divide --batch_size=16"):
            counts(bad, 16, "cpu")


SCRIPT = os.path.abspath(port_comparison.__file__)


def test_the_script_loads_in_the_ports_python_which_has_no_jax():
    """The port's worker runs this file in the torch environment: its module level may
    import nothing of jax or flowzoo."""
    blocked = "import sys, runpy; sys.modules.update(jax=None, flowzoo=None, numpy=None); "
    run = subprocess.run([sys.executable, "-c", blocked + f"runpy.run_path({SCRIPT!r})"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_device_counts_that_do_not_divide_the_batch_are_refused(tmp_path):
    run = subprocess.run([sys.executable, SCRIPT, f"--port_dir={tmp_path}", "--batch_size=16",
                          "--cpu_devices=1,3"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "--cpu_devices takes device counts that divide --batch_size=16" in run.stderr


def test_compute_dtypes_are_the_models_policies(tmp_path):
    run = subprocess.run([sys.executable, SCRIPT, f"--port_dir={tmp_path}",
                          "--compute_dtypes=float32,float16"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2
    assert ("--compute_dtypes takes some of float32, bfloat16, bfloat16_products, got "
            "'float32,float16'") in run.stderr, run.stderr[-2000:]


def test_the_port_worker_takes_the_arguments_the_comparison_gives_it(tmp_path):
    """As the parent runs it (default --cpu_devices): past its arguments to the port's own
    imports, which fail here because this Python has no torch or no port checkout."""
    run = subprocess.run([sys.executable, SCRIPT, "--worker=port", f"--port_copy={tmp_path}",
                          "--batch_size=2", "--steps=1", "--device=cpu", "--threads=1"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "ModuleNotFoundError: No module named" in run.stderr, run.stderr[-2000:]
    assert "'torch'" in run.stderr or "'util'" in run.stderr, run.stderr[-2000:]


def test_the_flowzoo_worker_splits_the_batch_over_two_cpu_devices():
    """The worker run as the comparison runs it, on the smoke model: 2 CPU devices, the
    state replicated and the batch split (a batch the devices cannot share would fail)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [sys.executable, SCRIPT, "--worker=flowzoo", "--compute_dtype=float32",
         "--config=" + os.path.join(port_comparison.ROOT, "experiments", "configs",
                                    "flowpp_cifar10.py:smoke"),
         "--cpu_devices=2", "--batch_size=4", "--steps=1", "--device=cpu", "--threads=2"],
        capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["framework"].endswith("2 device(s)")
    assert result["train_img_s"] > 0 and result["sample_img_s"] > 0
