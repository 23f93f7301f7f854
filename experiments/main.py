"""Launch an experiment: train, eval, sample or describe (the same as the ``flowzoo`` command).

    python experiments/main.py --config experiments/configs/digits_flow.py \\
        --workdir workdirs/digits_flow [--mode train] [--config.train.num_steps=500]

``python experiments/main.py --help`` lists the configs and their presets; see flowzoo/cli.py.
"""

from flowzoo import cli  # first: it catches SIGTERM from the start

if __name__ == "__main__":
    cli.run()
