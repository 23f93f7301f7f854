"""experiments/reproduce.py: the quick suite end to end on the real files (train, skip what
finished, resume what did not, the IW sweep, the page and its figures), and the verdicts."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading

import pytest

from experiments.suite import claims, report, runner

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = os.environ.get("FLOWZOO_DATA_DIR")
needs_data = pytest.mark.skipif(
    not DATA or not all((pathlib.Path(DATA) / d).is_dir() for d in
                        ("mnist", "caltech101_silhouettes")),
    reason="FLOWZOO_DATA_DIR with mnist/ and caltech101_silhouettes/ (the official files) "
           "is not set")


def _reproduce(workdir, *extra, env=None, wait=True):
    command = [sys.executable, "experiments/reproduce.py", "--suite=quick",
               f"--workdir={workdir}", *extra]
    # One compilation cache for the suite's processes: a second seed and a resumed run load
    # their programs instead of compiling them again.
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(workdir / "jax_cache"), **(env or {})}
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@needs_data
def test_quick_suite_writes_the_page_and_continues_after_sigterm(tmp_path):
    suite = claims.suite("quick")
    runs = [(c, v, s) for c in suite.claims for v in c.variants for s in runner.seeds_of(c, v)]
    # SIGTERM while the first run trains: it saves, the suite stops with 143.
    claim0, variant0, seed0 = runs[0]
    first = runner.run_dir(tmp_path / "quick", claim0, variant0.label, seed0)
    proc = _reproduce(tmp_path, wait=False)
    # The suite echoes each run's progress as it comes: SIGTERM once the first run has
    # logged step 2 of its 4 (its checkpoint is written only at step 4, which is why
    # waiting for a checkpoint raced with the run's end).
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "step 2/" in line:
            break
    watchdog.cancel()
    assert proc.poll() is None, "".join(seen)
    proc.send_signal(signal.SIGTERM)
    out = "".join(seen) + proc.communicate(timeout=300)[0]
    assert proc.returncode == 143, out
    assert "rerun the same command to continue" in out
    assert not (first / "summary.json").exists()

    done = _reproduce(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("[train]") == len(runs)  # the interrupted run resumed, once
    assert "Resumed from" in (first / "reproduce.log").read_text()

    page = tmp_path / "quick" / "results.md"
    text = page.read_text()
    for claim in suite.claims:
        assert f"## {claim.title}" in text
        for variant in claim.variants:
            row = next(line for line in text.splitlines() if line.startswith(f"| {variant.label} |"))
            assert "not run" not in row
            assert re.search(r"\| \d[\d,]* \|", row), row  # the parameter count
        for name in ("learning_curves", "samples"):
            assert (page.parent / "results" / f"{claim.key}_{name}.png").stat().st_size > 1000
    assert (page.parent / "results" / "vlae_caltech_reconstructions.png").exists()
    verdicts = re.findall(r"\*\*(reproduces|does not reproduce at this scale)\*\*", text)
    assert len(verdicts) == sum(len(c.comparisons) for c in suite.claims)
    sweep = suite.sweeps[0]
    values = [json.loads((runner.run_dir(tmp_path / "quick", suite.claims[1],
                                         sweep.variant, 0) / "iw_sweep" /
                          f"K{k}_n{sweep.max_examples}.json").read_text())[sweep.metric]
              for k in sweep.ks]
    assert f"| {sweep.ks[-1]} | {values[-1]:.4f} |" in text
    assert re.search(r"\d ± \d", text)  # mean ± spread over two seeds
    assert "evaluated with K = 4 importance samples on 32 validation examples" in text
    assert "--config.seed=1" in text  # each row's command

    again = _reproduce(tmp_path)  # everything finished: nothing runs, the page is rewritten
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[train]" not in again.stdout and "[eval]" not in again.stdout
    assert again.stdout.count("[done]") == len(runs)


def test_missing_data_dir_names_the_fix(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FLOWZOO_DATA_DIR"}
    result = subprocess.run([sys.executable, "experiments/reproduce.py", "--suite=quick",
                             f"--workdir={tmp_path}"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "Set FLOWZOO_DATA_DIR" in result.stderr and "caltech101_silhouettes/" in result.stderr
    result = _reproduce(tmp_path, env={"FLOWZOO_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "lacks" in result.stderr, result.stderr


def _found(**values):
    """report.collect's shape for a few variants' per-seed metric values."""
    return {label: {"seeds": {s: {"m": v} for s, v in enumerate(vs)}} for label, vs in
            values.items()}


def test_verdicts_say_whether_a_comparison_holds_and_how_many_seeds_agree():
    held = report.verdict(_found(a=[1.0, 1.2], b=[1.5, 1.1]), claims.Comparison("a", "b", "m"))
    assert "**reproduces**" in held and "1 of 2 seeds agree" in held and "+0.200" in held
    failed = report.verdict(_found(a=[2.0], b=[1.5]), claims.Comparison("a", "b", "m"))
    assert "does not reproduce at this scale" in failed and "-0.500" in failed
    assert "not run" in report.verdict(_found(a=[], b=[1.0]), claims.Comparison("a", "b", "m"))


def test_suites_define_a_step_budget_and_distinct_run_folders():
    for name in claims.SUITES:
        suite = claims.suite(name)
        folders = set()
        for claim in suite.claims:
            assert runner.step_budget(claim) > 0
            for variant in claim.variants:
                for seed in runner.seeds_of(claim, variant):
                    folders.add(runner.run_dir(pathlib.Path("r"), claim, variant.label, seed))
        assert len(folders) == sum(len(runner.seeds_of(c, v)) for c in suite.claims
                                   for v in c.variants)
        for sweep in suite.sweeps:
            claim = next(c for c in suite.claims if c.key == sweep.claim)
            assert sweep.variant in {v.label for v in claim.variants}
    with pytest.raises(ValueError, match="Unknown suite"):
        claims.suite("full")


def test_a_sigterm_while_a_command_ends_still_stops_the_suite(tmp_path):
    """The command signals the suite and exits at once: the forwarded SIGTERM finds the
    child gone (or kills it), and the suite must still stop instead of starting the next
    run (a signal lost this way let a preempted suite run to its end)."""
    suite_runner = runner.Runner(tmp_path, echo=lambda *_: None)
    previous = signal.signal(signal.SIGTERM, suite_runner._forward_sigterm)
    try:
        with pytest.raises(KeyboardInterrupt):
            suite_runner._launch(["-c", "import os, signal; os.kill(os.getppid(), signal.SIGTERM)"],
                                 tmp_path / "log.txt")
    finally:
        signal.signal(signal.SIGTERM, previous)
