"""The workdir explains itself: ``config.json`` (the resolved config) and
``launch_commands.txt`` (every command line that trained in it, with the time).

A resume whose config differs from ``config.json`` in a key that changes the model, the
optimization or the data order stops with a one-line diff (unless ``allow_change``); keys
that only schedule or evaluate (:data:`FREE_KEYS`) may change freely.  An allowed change
rewrites ``config.json`` and keeps the previous one in ``config_history.jsonl``.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import shlex

from flowzoo.errors import ConfigError
from flowzoo.training import workdir as workdir_lib

# Keys a resume may change: when and what to log, evaluate, save; where data comes from;
# execution options that leave the computed function unchanged.
FREE_KEYS = ("train.num_steps", "train.log_every", "train.eval_every", "train.checkpoint_every",
             "train.keep_checkpoints", "train.max_nonfinite_in_a_row", "train.profile_steps",
             "eval.*", "data.data_dir", "data.manual_dir", "data.source", "parallel",
             "model.iw_samples", "model.iw_chunk", "model.remat", "model.scan_blocks",
             "model.scan_steps", "model.attention_loop", "model.init_from_official",
             "model.official_ema")


def _flatten(tree, prefix="") -> dict:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, path + ".")
        else:
            flat[path] = value
    return flat


def config_changes(stored: dict, current: dict) -> list[str]:
    """``key: old -> new`` for every key that differs and is not free to change."""
    old, new = _flatten(stored), _flatten(current)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(
        k, "<unset>") and not any(fnmatch.fnmatch(k, pattern) for pattern in FREE_KEYS))
    return [f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in changed]


def record(workdir, config, *, allow_change: bool, command=None, is_primary: bool = True):
    """Checks ``config`` against the workdir's ``config.json`` (raising ConfigError on a
    change that is not allowed) and then writes the record.  Call before anything else is
    written, so that a refused resume leaves the workdir as it was."""
    root = workdir_lib.resolve(workdir)
    path = root / "config.json"
    current = json.loads(config.to_json_best_effort())
    stored = json.loads(path.read_text()) if path.exists() else None
    if stored is not None:
        changes = config_changes(stored, current)
        if changes and not allow_change:
            shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more"
                                              if len(changes) > 4 else "")
            raise ConfigError(
                f"This config differs from the run in {root} ({shown}). Resume with the "
                f"run's config ({path}), use a new --workdir, or pass --allow_config_change.")
    if not is_primary:
        return
    workdir_lib.make_dirs(root)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if stored is not None and stored != current:
        history = root / "config_history.jsonl"
        previous = history.read_text() if history.exists() else ""
        workdir_lib.write_atomic(history, previous + json.dumps(
            {"replaced_at": stamp, "config": stored}) + "\n")
    if stored != current:
        workdir_lib.write_atomic(path, json.dumps(current, indent=2) + "\n")
    if command:
        log = root / "launch_commands.txt"
        previous = log.read_text() if log.exists() else ""
        workdir_lib.write_atomic(log, previous + f"{stamp}  {shlex.join(command)}\n")
