"""Launch an experiment: train, eval, sample or describe.

    python experiments/main.py --config experiments/configs/digits_flow.py \\
        --workdir workdirs/digits_flow [--mode train] [--config.train.num_steps=500]

``--config`` takes an optional argument (``configs/X.py:smoke``) and
``--config.a.b=value`` overrides; an unknown key fails at once naming the
nearest valid one.  Multi-host (TPU pods, SLURM, several local processes):
``--multihost`` (or FLOWZOO_MULTIHOST=1) calls ``jax.distributed.initialize``,
with ``--coordinator_address/--num_processes/--process_id`` when the cluster
does not provide them.  Compiled programs are cached on disk
(``--compilation_cache_dir``), so a relaunch skips most of its compile time.
"""

import signal
import threading

# Catch SIGTERM from the first moment (imports take seconds): the flag is handed to the
# trainer's handler, which says what it saved and exits 143 (flowzoo.training.preemption).
_SIGTERM_AT_START_UP = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: _SIGTERM_AT_START_UP.set())

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (path[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, metrics and images go: a folder or a URL such as "
    "gs://bucket/run (needs the gcs extra).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample", "describe"], "What to do.")
_MULTIHOST = flags.DEFINE_bool("multihost", os.environ.get("FLOWZOO_MULTIHOST") == "1",
                               "Call jax.distributed.initialize (also FLOWZOO_MULTIHOST=1).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir", None,
    "Persistent XLA compilation cache, so a relaunch (resume, eval, sample) loads its "
    "compiled programs instead of compiling again. Default: $JAX_COMPILATION_CACHE_DIR, else "
    "~/.cache/flowzoo/jax (4 GiB, least recently used evicted); '' (or the variable set "
    "but empty) turns it off.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep Orbax's INFO chatter out of the console
    import jax
    if _MULTIHOST.value:
        kwargs = {k: v for k, v in dict(coordinator_address=_COORDINATOR.value,
                                        num_processes=_NUM_PROCESSES.value,
                                        process_id=_PROCESS_ID.value).items() if v is not None}
        jax.distributed.initialize(**kwargs)
        print(f"process {jax.process_index()} of {jax.process_count()}, "
              f"{jax.local_device_count()} local / {jax.device_count()} global devices", flush=True)
    from flowzoo import training
    config = _CONFIG.value
    if _MODE.value == "describe":
        print(json.dumps(training.describe(config), indent=1))
        return
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required for train, eval and sample.")
    from flowzoo.training import compilation_cache
    compilation_cache.enable(_CACHE_DIR.value)  # before the first compile
    from flowzoo.training import preemption
    stop = preemption.StopSignal(received=_SIGTERM_AT_START_UP.is_set())
    if _MODE.value == "train":
        summary = training.train_and_evaluate(config, _WORKDIR.value, stop=stop)
        if summary["preempted"]:  # saved (or had nothing to save) and said so
            sys.exit(preemption.EXIT_CODE)  # let the scheduler restart the job
        if jax.process_index() == 0:
            print(f"Done: step {summary['step']}, test {summary['eval']['loss']:.4f} "
                  f"(EMA params). Checkpoints: {summary['checkpoint_dir']}; samples: "
                  f"{summary['samples_png']}; learning curve: {summary['learning_curve_png']}; "
                  f"metrics: {os.path.join(summary['workdir'], 'metrics.jsonl')}")
    else:
        try:
            if _MODE.value == "eval":
                print(json.dumps(training.evaluate(config, _WORKDIR.value, stop=stop), indent=1))
            else:
                print(f"Samples: {training.sample(config, _WORKDIR.value, stop=stop)}")
        except preemption.Preempted:
            print(f"Preempted during --mode={_MODE.value}: nothing to save.", flush=True)
            sys.exit(preemption.EXIT_CODE)


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
