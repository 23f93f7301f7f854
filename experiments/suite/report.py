"""The results page: one table per claim from the runs' workdirs, with the paper's numbers,
each row's command, a verdict per comparison, and figures (learning curves, samples,
reconstructions, the importance-weighted bound against K) as PNGs beside the page."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess

import numpy as np
from PIL import Image

from experiments.benchmarks import common as benchmark_common
from experiments.suite import runner
from experiments.suite.claims import Claim, Suite


def collect(root: pathlib.Path, claim: Claim) -> dict:
    """{variant label: {"seeds": {seed: final eval metrics}, "num_params", "steps",
    "wall_seconds": {seed: s}, "workdirs": {seed: path}}} for the finished runs."""
    found = {}
    for variant in claim.variants:
        entry = {"seeds": {}, "wall_seconds": {}, "workdirs": {}}
        described = runner.read_json(root / claim.key / runner.slug(variant.label) /
                                     "describe.json")
        entry["num_params"] = described and described["num_params"]
        for seed in runner.seeds_of(claim, variant):
            workdir = runner.run_dir(root, claim, variant.label, seed)
            if not runner.finished(claim, workdir):
                continue
            entry["seeds"][seed] = runner.read_json(workdir / "summary.json")["eval"]
            wall = runner.read_json(workdir / "wall_seconds.json")
            entry["wall_seconds"][seed] = wall and wall["seconds"]
            entry["workdirs"][seed] = workdir
        found[variant.label] = entry
    return found


def _values(entry: dict, metric: str) -> list[float]:
    return [metrics[metric] for _, metrics in sorted(entry["seeds"].items())]


def _cell(values: list[float], digits: int) -> str:
    """One seed: the value; several: mean ± half their range."""
    if not values:
        return "not run"
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


def verdict(found: dict, comparison) -> str:
    """Whether the comparison holds in these runs: by the mean over seeds, and seed by seed
    where both variants ran the same seed."""
    better, worse = (found[label]["seeds"] for label in (comparison.better, comparison.worse))
    if not better or not worse:
        return f"{comparison.better} vs {comparison.worse}: not run."
    mean_better = float(np.mean([m[comparison.metric] for m in better.values()]))
    mean_worse = float(np.mean([m[comparison.metric] for m in worse.values()]))
    gap = mean_worse - mean_better
    common = sorted(set(better) & set(worse))
    per_seed = ""
    if len(common) > 1:
        agree = sum(better[s][comparison.metric] < worse[s][comparison.metric] for s in common)
        per_seed = f"; {agree} of {len(common)} seeds agree"
    outcome = "**reproduces**" if gap > 0 else "**does not reproduce at this scale**"
    return (f"{comparison.better} < {comparison.worse} on `{comparison.metric}`: {outcome} "
            f"({mean_better:.3f} vs {mean_worse:.3f}, gap {gap:+.3f}{per_seed}).")


def _command_text(command: list[str], root: pathlib.Path) -> str:
    text = "python " + " ".join(shlex.quote(part) for part in command)
    return text.replace(str(root), "$ROOT")


def claim_section(root: pathlib.Path, claim: Claim, figures: pathlib.Path, page_dir) -> str:
    found = collect(root, claim)
    header = (["variant", "params"] + [c.header for c in claim.columns] +
              ["paper (full scale)", "seeds", "wall per run"])
    lines = [f"## {claim.title}", "", claim.statement, "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in claim.variants:
        entry = found[variant.label]
        walls = [w for w in entry["wall_seconds"].values() if w]
        row = [variant.label, f"{entry['num_params']:,}" if entry["num_params"] else "?"]
        row += [_cell(_values(entry, c.metric), c.digits) for c in claim.columns]
        row += [variant.paper or "-", str(len(entry["seeds"])),
                f"{np.mean(walls) / 60:.1f} min" if walls else "-"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"Budget: {runner.step_budget(claim)} steps per run "
                  f"(`{claim.config}` with the overrides below); {_eval_protocol(found)}"
                  f"{'; ' + claim.paper_note if claim.paper_note else ''}.", ""]
    lines += [f"- {verdict(found, comparison)}" for comparison in claim.comparisons]
    lines += ["", "Commands (`$ROOT` is the suite's folder; rerunning one resumes it):", "",
              "```"]
    for variant in claim.variants:
        for seed in runner.seeds_of(claim, variant):
            lines.append(_command_text(runner.train_command(
                claim, variant, seed, runner.run_dir(root, claim, variant.label, seed)), root))
    lines += ["```", ""]
    for name, path in _claim_figures(claim, found, figures).items():
        lines.append(f"![{name}]({os.path.relpath(path, page_dir)})")
    return "\n".join(lines) + "\n"


def _eval_protocol(found: dict) -> str:
    """'IW with K = k on n test examples', read from the runs' own config.json."""
    for entry in found.values():
        for seed, workdir in entry["workdirs"].items():
            config = runner.read_json(workdir / "config.json") or {}
            metrics = entry["seeds"][seed]
            k = config.get("model", {}).get("iw_samples", "?")
            return (f"evaluated with K = {k} importance samples on "
                    f"{int(metrics['num_examples']):,} "
                    f"{config.get('data', {}).get('eval_split', 'test')} examples")
    return "not run yet"


def _claim_figures(claim: Claim, found: dict, figures: pathlib.Path) -> dict:
    """Learning curves (seed 0 of each variant) and image grids side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, entry in found.items():
        if entry["workdirs"]:
            steps, values = _history(next(iter(entry["workdirs"].values())))
            ax.plot(steps, values, label=label)
    ax.set(xlabel="step", ylabel=f"train loss ({claim.unit})", title=claim.title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out["learning curves"] = _save(fig, figures / f"{claim.key}_learning_curves.png")
    plt.close(fig)
    for kind in ("samples", "reconstructions"):
        grids = {label: _latest_png(next(iter(e["workdirs"].values())), kind)
                 for label, e in found.items() if e["workdirs"]}
        grids = {label: path for label, path in grids.items() if path}
        if not grids:
            continue
        fig, axes = plt.subplots(1, len(grids), figsize=(3 * len(grids), 3.4), squeeze=False)
        for ax, (label, path) in zip(axes[0], grids.items()):
            ax.imshow(np.asarray(Image.open(path).convert("L")), cmap="gray")
            ax.set_title(label, fontsize=7, wrap=True)
            ax.axis("off")
        if kind == "reconstructions":
            fig.suptitle("top half: test images; bottom half: their decompressions", fontsize=8)
        fig.tight_layout()
        out[kind] = _save(fig, figures / f"{claim.key}_{kind}.png")
        plt.close(fig)
    return out


def _history(workdir: pathlib.Path):
    latest = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("split") == "train" and "loss" in row:
            latest[row["step"]] = row["loss"]
    steps = sorted(latest)
    return steps, [latest[s] for s in steps]


def _latest_png(workdir: pathlib.Path, kind: str):
    paths = sorted(workdir.glob(f"{kind}_step*.png"))
    return paths[-1] if paths else None


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def sweep_section(root: pathlib.Path, suite: Suite, figures: pathlib.Path, page_dir) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lines = ["## The importance-weighted bound tightens with K", "",
             "One trained run per family, evaluated with K importance samples on the same "
             "test examples for every K (a fixed random subset).  The bound can only "
             "fall as K grows, in expectation; at K = 1 it is the single-sample bound.", ""]
    for sweep in suite.sweeps:
        claim = next(c for c in suite.claims if c.key == sweep.claim)
        variant = next(v for v in claim.variants if v.label == sweep.variant)
        workdir = runner.run_dir(root, claim, variant.label, sweep.seed)
        rows = [(k, runner.read_json(workdir / "iw_sweep" / f"K{k}_n{sweep.max_examples}.json"))
                for k in sweep.ks]
        rows = [(k, r) for k, r in rows if r]
        lines += [f"### {claim.title}: {variant.label}, seed {sweep.seed}, "
                  f"{sweep.max_examples} test examples", "",
                  f"| K | bound ({sweep.unit}) | eval wall |", "|---|---|---|"]
        lines += [f"| {k} | {r[sweep.metric]:.4f} | {r['wall_seconds']:.0f} s |" for k, r in rows]
        values = [r[sweep.metric] for _, r in rows]
        if len(values) == len(sweep.ks):
            falls = all(b <= a for a, b in zip(values, values[1:]))
            lines += ["", f"- The bound {'**falls with every K**' if falls else '**does not fall monotonically**'}"
                          f": {values[0]:.4f} at K = {sweep.ks[0]} to {values[-1]:.4f} at "
                          f"K = {sweep.ks[-1]}."]
            fig, ax = plt.subplots(figsize=(5, 3.2))
            ax.semilogx([k for k, _ in rows], values, "o-", base=2)
            ax.set(xlabel="K (importance samples)", ylabel=sweep.unit,
                   title=f"{claim.key}: IW bound vs K")
            fig.tight_layout()
            path = _save(fig, figures / f"{claim.key}_iw_sweep.png")
            plt.close(fig)
            lines += ["", f"![IW bound vs K]({os.path.relpath(path, page_dir)})"]
        lines += ["", "```", _command_text(runner.sweep_command(
            claim, variant, sweep, sweep.ks[-1], workdir), root) + "   # and each K", "```", ""]
    return "\n".join(lines) + "\n"


def machine() -> str:
    import jax
    host = benchmark_common.machine()
    return (f"{host['cpu']}, {host['cores']} cores, Python {platform.python_version()}, "
            f"jax {jax.__version__} on {jax.default_backend()}")


def commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=runner.REPO, capture_output=True,
                              text=True).stdout.strip()
    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line for line in git("status", "--porcelain").splitlines()
             if "docs/results" not in line]
    return sha + (" (with uncommitted changes)" if dirty else "")


def record_launch(root: pathlib.Path):
    """Appends this launch's commit and time to ROOT/launches.jsonl (the page names them)."""
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(root / "launches.jsonl", "a") as f:
        f.write(json.dumps({"commit": commit(), "date": now}) + "\n")


def _launches(root: pathlib.Path) -> str:
    path = root / "launches.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return "; ".join(f"{r['date']} at commit {r['commit']}" for r in rows) or "none recorded"


def write(root: pathlib.Path, suite: Suite, page: pathlib.Path, command: str) -> pathlib.Path:
    """Writes the page (and its figures in ``<page's folder>/results/``); returns its path."""
    page.parent.mkdir(parents=True, exist_ok=True)
    figures = page.parent / "results"
    walls = [runner.read_json(p) for p in root.glob("*/*/seed*/wall_seconds.json")]
    sweeps = [runner.read_json(p) for p in root.glob("*/*/seed*/iw_sweep/K*.json")]
    total = sum(w["seconds"] for w in walls if w) + sum(s["wall_seconds"] for s in sweeps)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Results", "",
        f"Written by `{command}` (suite `{suite.name}`) on {now}, commit {commit()}, "
        f"on {machine()}; the suite's runs took {total / 3600:.2f} h of wall time (launched "
        f"{_launches(root)}).  Rerun it "
        f"with `FLOWZOO_DATA_DIR=DIR {command}`: finished runs are skipped, unfinished ones "
        f"resume from their checkpoints.", "",
        "These are CPU-scale runs: hundreds of steps on small models, against papers that "
        "trained for days on GPUs, so the papers' numbers (the *paper* column, full scale) are "
        "not the target.  What is tested is each claim's *direction* at equal budget; a "
        "verdict says whether it holds here, and a claim that does not reproduce at this "
        "scale is reported as such (nothing was tuned until it did).  All numbers are the EMA "
        "parameters', on the split and number of examples named under each table (a fixed "
        "random subset when not the whole split); ± is half the range over seeds.", ""]
    parts += [claim_section(root, claim, figures, page.parent) for claim in suite.claims]
    if suite.sweeps:
        parts.append(sweep_section(root, suite, figures, page.parent))
    page.write_text("\n".join(parts))
    return page
