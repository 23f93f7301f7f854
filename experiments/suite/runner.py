"""Runs a suite's experiments resumably, each as the ``experiments/main.py`` command that the
results page prints for it.

Layout under the suite's folder ``ROOT``: ``ROOT/<claim>/<variant slug>/seed<S>/`` is a
run's workdir (the trainer's checkpoints, ``metrics.jsonl``, ``summary.json``, images), plus
``reproduce.log`` (the command's output) and ``wall_seconds.json`` (its wall time, summed over
attempts); ``describe.json`` beside the seeds holds the parameter count; an IW sweep writes
``iw_sweep/K<K>_n<N>.json`` in its run's workdir.  A run whose ``summary.json`` reached its
step budget is finished and skipped; any other run is relaunched and resumes from its newest
checkpoint (the trainer's own resume), so a killed suite continues where it stopped.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

from absl import flags
from ml_collections import config_flags

from experiments.suite.claims import Claim, IWSweep, Suite
from flowzoo import experiment

REPO = pathlib.Path(__file__).resolve().parents[2]
MAIN = "experiments/main.py"


class RunFailed(RuntimeError):
    """A command of the suite exited with an error; its log names the cause."""


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def run_dir(root: pathlib.Path, claim: Claim, label: str, seed: int) -> pathlib.Path:
    return root / claim.key / slug(label) / f"seed{seed}"


def seeds_of(claim: Claim, variant) -> tuple[int, ...]:
    return variant.seeds if variant.seeds is not None else claim.seeds


def _config_flags(claim: Claim, variant, seed: int) -> list[str]:
    overrides = dict(claim.overrides) | dict(variant.overrides) | {"seed": str(seed)}
    return ["--config", claim.config] + [f"--config.{key}={value}"
                                         for key, value in overrides.items()]


def load_config(claim: Claim, variant, seed: int):
    """The config the run's command builds, parsed the way the launcher parses it."""
    argv = [MAIN, *_config_flags(claim, variant, seed)]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    return flag_values.config


def train_command(claim: Claim, variant, seed: int, workdir) -> list[str]:
    """The launch (and resume) command of one run, as a user would type it."""
    flags = _config_flags(claim, variant, seed)
    return [MAIN, *flags[:2], "--workdir", str(workdir), *flags[2:]]


def sweep_command(claim: Claim, variant, sweep: IWSweep, k: int, workdir) -> list[str]:
    return train_command(claim, variant, sweep.seed, workdir) + [
        "--mode=eval", f"--config.model.iw_samples={k}",
        f"--config.model.iw_chunk={min(k, sweep.chunk)}",
        f"--config.eval.max_examples={sweep.max_examples}",
        f"--config.eval.batch_size={min(sweep.batch_size, sweep.max_examples)}"]


def step_budget(claim: Claim) -> int:
    budget = dict(claim.overrides).get("train.num_steps")
    if budget is None:
        raise ValueError(f"claim {claim.key!r} must set train.num_steps in its overrides: the "
                         f"runner tells finished runs by it.")
    return int(budget)


def read_json(path: pathlib.Path):
    return json.loads(path.read_text()) if path.exists() else None


def finished(claim: Claim, workdir: pathlib.Path) -> bool:
    summary = read_json(workdir / "summary.json")
    return bool(summary) and summary.get("step") == step_budget(claim)


class Runner:
    """Launches the suite's commands one at a time; SIGTERM stops the current one (which
    saves a checkpoint) and then the suite, so a rerun continues."""

    def __init__(self, root: pathlib.Path, env: dict | None = None, echo=None):
        self.root = root
        self.env = {**os.environ, **(env or {})}
        self.echo = echo or functools.partial(print, flush=True)
        self._child = None
        self._stop = False  # a SIGTERM arrived: stop once the current command has ended

    def _launch(self, command: list[str], log: pathlib.Path) -> str:
        """Runs ``python COMMAND`` from the repository root, its output into ``log`` and its
        stdout (progress lines) echoed as it comes; returns its stdout; raises RunFailed
        naming the log on a non-zero exit."""
        log.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        with open(log, "a") as out:
            out.write(f"\n$ python {' '.join(command)}\n")
            out.flush()
            self._child = subprocess.Popen([sys.executable, *command], cwd=REPO, env=self.env,
                                           stdout=subprocess.PIPE, stderr=out, text=True)
            for line in self._child.stdout:
                lines.append(line)
                out.write(line)
                out.flush()
                self.echo("    " + line.rstrip())
            code, self._child = self._child.wait(), None
        # A SIGTERM between the child's exit and the line above reached no process; the
        # flag keeps it (the run itself finished and a rerun skips it).
        if code == 143 or self._stop:
            raise KeyboardInterrupt("preempted")
        if code:
            raise RunFailed(f"`python {' '.join(command)}` exited with {code}; see {log}.")
        return "".join(lines)

    def _forward_sigterm(self, signum, frame):
        del frame
        self._stop = True
        if self._child is not None:
            self._child.send_signal(signum)  # the trainer saves and exits 143
        else:
            raise KeyboardInterrupt("SIGTERM")

    def run_suite(self, suite: Suite):
        previous = signal.signal(signal.SIGTERM, self._forward_sigterm)
        try:
            for claim in suite.claims:
                for variant in claim.variants:
                    self.describe(claim, variant)
                    for seed in seeds_of(claim, variant):
                        self.train(claim, variant, seed)
            for sweep in suite.sweeps:
                self.sweep(suite, sweep)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def describe(self, claim: Claim, variant):
        """The variant's parameter count (``--mode=describe``, in this process: no data, no
        compile) -> describe.json beside its seeds."""
        path = self.root / claim.key / slug(variant.label) / "describe.json"
        if path.exists():
            return
        described = experiment.describe(load_config(claim, variant, 0))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"num_params": described["num_params"]}) + "\n")

    def train(self, claim: Claim, variant, seed: int):
        workdir = run_dir(self.root, claim, variant.label, seed)
        if finished(claim, workdir):
            self.echo(f"[done]  {claim.key} / {variant.label} / seed {seed}")
            return
        self.echo(f"[train] {claim.key} / {variant.label} / seed {seed} -> {workdir}")
        started = time.perf_counter()
        try:
            self._launch(train_command(claim, variant, seed, workdir),
                         workdir / "reproduce.log")
        finally:
            _add_wall_seconds(workdir, time.perf_counter() - started)

    def sweep(self, suite: Suite, sweep: IWSweep):
        claim = next(c for c in suite.claims if c.key == sweep.claim)
        variant = next(v for v in claim.variants if v.label == sweep.variant)
        workdir = run_dir(self.root, claim, variant.label, sweep.seed)
        for k in sweep.ks:
            path = workdir / "iw_sweep" / f"K{k}_n{sweep.max_examples}.json"
            if path.exists():
                continue
            self.echo(f"[eval]  {claim.key} / {variant.label}: K = {k} on "
                      f"{sweep.max_examples} examples")
            started = time.perf_counter()
            stdout = self._launch(sweep_command(claim, variant, sweep, k, workdir),
                                  workdir / "iw_sweep" / "reproduce.log")
            metrics = _last_json(stdout)
            metrics["wall_seconds"] = time.perf_counter() - started
            path.write_text(json.dumps(metrics, indent=1) + "\n")


def _last_json(stdout: str) -> dict:
    """The JSON object that a ``--mode=eval`` launch prints last."""
    newline = stdout.rfind("\n{")
    return json.loads(stdout[newline + 1 if newline >= 0 else stdout.index("{"):])


def _add_wall_seconds(workdir: pathlib.Path, seconds: float):
    path = workdir / "wall_seconds.json"
    if not workdir.exists():
        return
    record = read_json(path) or {"seconds": 0.0, "attempts": 0}
    record["seconds"] += seconds
    record["attempts"] += 1
    path.write_text(json.dumps(record) + "\n")
