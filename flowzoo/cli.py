"""The ``flowzoo`` command: train, evaluate, sample or describe an experiment.

    flowzoo train --config experiments/configs/digits_flow.py --workdir workdirs/digits_flow
    python experiments/main.py --config ...:smoke --workdir /tmp/run --mode=eval   # the same

``--config`` is an ml_collections config file with an optional preset (``file.py:smoke``);
``--config.a.b=value`` overrides one key.  Mistakes (an unknown key, a missing config file or
data, a workdir that cannot be written) end in one to three lines naming the fix;
``--verbose_errors`` (or ``-v 1``) shows the traceback.  JAX's own flags work too
(``--jax_platforms=cpu``).  On a CPU a one-process launch splits each batch over one device
per core (as many as divide the batch sizes, at most 8; ``--jax_num_cpu_devices=N`` chooses:
flowzoo.training.cpu_devices).  Multi-host (TPU pods, SLURM, several local processes):
``--multihost`` calls ``jax.distributed.initialize``.  Compiled programs are cached on disk
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
import re  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from flowzoo import config_catalog, experiment  # noqa: E402
from flowzoo.errors import UserError  # noqa: E402
from flowzoo.training import compilation_cache, cpu_devices, preemption  # noqa: E402
from flowzoo.training import workdir as workdir_lib  # noqa: E402

MODES = ("train", "eval", "sample", "describe")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (path[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, metrics and images go: a folder or a URL such as "
    "gs://bucket/run (needs the gcs extra).")
_MODE = flags.DEFINE_enum("mode", "train", MODES, "What to do (or give it first: flowzoo eval).")
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
_VERBOSE_ERRORS = flags.DEFINE_bool(
    "verbose_errors", False, "Show the traceback of a user error (a bad key, a missing file).")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume even though the config differs from the workdir's "
    "config.json in keys that change the model or the data order.")
jax.config.parse_flags_with_absl()  # --jax_platforms=cpu and friends, as in big_vision


def _fail(message: str, code: int = 2):
    """One to three lines on stderr, no traceback."""
    print(f"Error: {message}\n(--verbose_errors shows the traceback)", file=sys.stderr,
          flush=True)
    sys.exit(code)


def _describe_flag_error(err: Exception, argv) -> str:
    """A flag or config parse failure -> what went wrong and the fix, in at most two lines."""
    text = str(err)
    typo = re.search(r'Did you mean \W*"(\w+)\W* instead of \W*"(\w+)', text)
    if typo:  # ml_collections: an override names a key the config lacks
        near, bad = typo.groups()
        flag = next((a.split("=", 1)[0].lstrip("-") for a in argv
                     if a.startswith("--config.") and a.split("=", 1)[0].endswith("." + bad)),
                    f"config.{bad}")
        return config_catalog.unknown_override(flag, _config_arg(argv), near=near)
    unknown = re.search(r"Unknown command line flag '(config\.[\w.]+)'", text)
    if unknown:
        return config_catalog.unknown_override(unknown.group(1), _config_arg(argv))
    inner = re.findall(r"^(\w*Error): (.+)$", text, flags=re.M)
    if inner:  # the config file raised: its own message names the fix
        return inner[-1][1].strip("'\"")
    return text.splitlines()[0]


def _config_arg(argv) -> str:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return ""


def _parse_flags(argv):
    """absl's parse, with the subcommand form (``flowzoo eval ...``), a --help that lists
    the configs, and config mistakes reported in a line or two."""
    argv = list(argv)
    if len(argv) > 1 and argv[1] in MODES:
        argv = [argv[0], f"--mode={argv[1]}", *argv[2:]]
    if any(a in ("-h", "--help", "-?", "--helpshort") for a in argv[1:]):
        try:
            print(config_catalog.help_text(flags.FLAGS.module_help(__name__)), flush=True)
        except BrokenPipeError:  # flowzoo --help | head
            pass
        sys.exit(0)
    config_file = _config_arg(argv).partition(":")[0]
    if not config_file or not os.path.isfile(os.path.expanduser(config_file)):
        what = f"config file {config_file!r} not found" if config_file else "--config is required"
        _fail(f"{what}.\nConfigs: {', '.join(config_catalog.names())} "
              f"(in {config_catalog.folder()}).")
    try:
        rest = flags.FLAGS(argv)
        _ = _CONFIG.value  # loads the config file: its errors are parse errors too
    except Exception as err:  # noqa: BLE001 - reported in a line unless --verbose_errors
        if "--verbose_errors" in argv:
            raise
        _fail(_describe_flag_error(err, argv))
    return rest


def _check_workdir(path: str, mode: str):
    """Train needs a workdir it can create or write; nothing is created here."""
    if workdir_lib.is_remote(path) or mode != "train":
        return
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--workdir {path} is a file, not a folder; pass a folder.")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--workdir {path} cannot be written ({existing} is not a writable "
                        f"folder); pass a folder you can write.")


def _main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; modes go first (flowzoo "
                        f"{'|'.join(MODES)} ...) or as --mode=.")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep Orbax's INFO chatter out of the console
    if _MULTIHOST.value:
        kwargs = {k: v for k, v in dict(coordinator_address=_COORDINATOR.value,
                                        num_processes=_NUM_PROCESSES.value,
                                        process_id=_PROCESS_ID.value).items() if v is not None}
        jax.distributed.initialize(**kwargs)
        print(f"process {jax.process_index()} of {jax.process_count()}, "
              f"{jax.local_device_count()} local / {jax.device_count()} global devices", flush=True)
    config = _CONFIG.value
    if not _MULTIHOST.value:  # before anything starts JAX's backends
        cpu_devices.choose(config, flags.FLAGS["jax_num_cpu_devices"].present)
    if _MODE.value == "describe":
        print(json.dumps(experiment.describe(config), indent=1))
        return
    if not _WORKDIR.value:
        raise UserError("--workdir is required for train, eval and sample.")
    _check_workdir(_WORKDIR.value, _MODE.value)
    compilation_cache.enable(_CACHE_DIR.value)  # before the first compile
    stop = preemption.StopSignal(received=_SIGTERM_AT_START_UP.is_set())
    if _MODE.value == "train":
        summary = experiment.train_and_evaluate(
            config, _WORKDIR.value, stop=stop, allow_config_change=_ALLOW_CONFIG_CHANGE.value,
            command=sys.argv)
        if summary["preempted"]:  # saved (or had nothing to save) and said so
            sys.exit(preemption.EXIT_CODE)  # let the scheduler restart the job
        if jax.process_index() == 0:
            print(f"Done: step {summary['step']}, test {summary['eval']['loss']:.4f} "
                  f"(EMA params). Checkpoints: {summary['checkpoint_dir']}; samples: "
                  f"{summary['samples_png']}; learning curve: {summary['learning_curve_png']}; "
                  f"metrics: {os.path.join(summary['workdir'], 'metrics.jsonl')}")
        return
    try:
        if _MODE.value == "eval":
            print(json.dumps(experiment.evaluate(config, _WORKDIR.value, stop=stop), indent=1))
        else:
            print(f"Samples: {experiment.sample(config, _WORKDIR.value, stop=stop)}")
    except preemption.Preempted:
        print(f"Preempted during --mode={_MODE.value}: nothing to save.", flush=True)
        sys.exit(preemption.EXIT_CODE)


def _main_reporting_user_errors(argv):
    try:
        _main(argv)
    except UserError as err:
        if _VERBOSE_ERRORS.value or (flags.FLAGS["verbosity"].present
                                     and flags.FLAGS.verbosity >= 1):
            raise
        _fail(err.summary(), code=1)


def run():
    """Entry point of the ``flowzoo`` command and of ``experiments/main.py``."""
    app.run(_main_reporting_user_errors, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
