"""Reproduce the papers' claims at CPU scale and write the results page.

    FLOWZOO_DATA_DIR=DIR python experiments/reproduce.py --suite=cpu      # docs/results.md
    FLOWZOO_DATA_DIR=DIR python experiments/reproduce.py --suite=quick    # pipeline check

Runs every experiment of the suite (experiments/suite/claims.py) on the real data in
``FLOWZOO_DATA_DIR`` (MNIST, static binarized MNIST, Caltech-101 Silhouettes: the official
files), each as the ``experiments/main.py`` command the page prints, then writes the page and
its figures.  Resumable: rerun the same command after a kill or a SIGTERM and finished runs
are skipped, unfinished ones resume from their newest checkpoint.  ``--report_only`` rewrites
the page from what has run so far.
"""

import os
import pathlib
import sys

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # `experiments.suite`

from experiments.suite import claims, report, runner  # noqa: E402

_SUITE = flags.DEFINE_enum("suite", "cpu", sorted(claims.SUITES),
                           "cpu: the results table (about an hour and a quarter on 2 CPU cores); "
                           "quick: the same pipeline on tiny models (a few minutes).")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/reproduce",
                               "Folder of the suite's runs (one subfolder per suite).")
_OUTPUT = flags.DEFINE_string("output", None,
                              "The page to write; default docs/results.md for --suite=cpu, "
                              "WORKDIR/SUITE/results.md otherwise.  Figures go to "
                              "results/ beside it.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False,
                                 "Write the page from the finished runs; run nothing.")

def _check_data(suite):
    """The suite reads the official files; say what is missing before anything runs."""
    data_dir = os.environ.get("FLOWZOO_DATA_DIR")
    # The official files of dataset NAME live in DIR/NAME/ (flowzoo/data/files.py).
    needed = sorted({runner.load_config(c, c.variants[0], 0).data.name for c in suite.claims})
    if not data_dir:
        sys.exit(f"Set FLOWZOO_DATA_DIR to a folder holding {', '.join(f'{n}/' for n in needed)} (the "
                 f"official files; see flowzoo/data/files.py), e.g. "
                 f"FLOWZOO_DATA_DIR=/data python experiments/reproduce.py --suite={suite.name}.")
    missing = [name for name in needed if not (pathlib.Path(data_dir) / name).is_dir()]
    if missing:
        sys.exit(f"FLOWZOO_DATA_DIR={data_dir} lacks {', '.join(f'{m}/' for m in missing)}, "
                 f"which suite {suite.name!r} trains on; put the official files there.")


def main(argv):
    del argv
    suite = claims.suite(_SUITE.value)
    root = pathlib.Path(_WORKDIR.value).resolve() / suite.name
    page = pathlib.Path(_OUTPUT.value or (runner.REPO / "docs" / "results.md"
                                          if suite.name == "cpu" else root / "results.md"))
    command = f"python experiments/reproduce.py --suite={suite.name}"
    if not _REPORT_ONLY.value:
        _check_data(suite)
        report.record_launch(root)
        try:
            runner.Runner(root).run_suite(suite)
        except KeyboardInterrupt as stopped:
            print(f"Stopped ({stopped}); rerun the same command to continue.", flush=True)
            sys.exit(143)
        except runner.RunFailed as failed:
            sys.exit(str(failed))
    print(f"Results: {report.write(root, suite, page, command)}", flush=True)


if __name__ == "__main__":
    app.run(main)
