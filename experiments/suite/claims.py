"""The papers' claims as fixed-budget experiments: what runs, what is compared, the paper's
numbers.

A :class:`Claim` trains one run per (variant, seed) of one config and compares variants on
an eval metric (:class:`Comparison`: the paper says ``better`` has the lower value); an
:class:`IWSweep` evaluates one trained run of a claim with K importance samples for several K.
:func:`suite` returns the named suite: ``cpu`` (the results table, sized for about an hour
and a quarter on 2 CPU cores) or ``quick`` (the same pipeline on tiny models and budgets, for CI).
"""

from __future__ import annotations

import dataclasses

FLOWPP_MNIST = "experiments/configs/flowpp_mnist.py"
VLAE_STATIC_MNIST = "experiments/configs/vlae_static_mnist.py"
VLAE_CALTECH = "experiments/configs/vlae_caltech.py"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One arm of a claim: a label, ``--config.KEY=VALUE`` overrides, the paper's number."""

    label: str
    overrides: tuple[tuple[str, str], ...] = ()
    paper: str = ""
    seeds: tuple[int, ...] | None = None  # None: the claim's seeds


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The paper's claim that ``better`` has a lower ``metric`` than ``worse``."""

    better: str
    worse: str
    metric: str


@dataclasses.dataclass(frozen=True)
class Column:
    metric: str  # a key of the run's final eval metrics
    header: str
    digits: int = 3


@dataclasses.dataclass(frozen=True)
class Claim:
    key: str  # names the runs' folders and the figures
    title: str
    statement: str  # what the paper claims, and at which scale
    config: str  # experiments/configs/X.py:PRESET
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    columns: tuple[Column, ...]
    comparisons: tuple[Comparison, ...]
    overrides: tuple[tuple[str, str], ...] = ()  # for every variant (the suite's budget)
    unit: str = ""
    paper_note: str = ""  # where the paper's numbers come from


@dataclasses.dataclass(frozen=True)
class IWSweep:
    """``metric`` of one trained run (``claim``'s ``variant``, ``seed``) with K importance
    samples for each K in ``ks``, on the first ``max_examples`` eval examples."""

    claim: str
    variant: str
    seed: int
    ks: tuple[int, ...]
    max_examples: int
    metric: str
    unit: str
    chunk: int = 16  # samples per step of the evaluation's loop (memory, not the result)
    batch_size: int = 8  # eval batch: the K = 4096 pass holds chunk x batch_size examples


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    claims: tuple[Claim, ...]
    sweeps: tuple[IWSweep, ...]


_FLOWPP_VARIANTS = (
    Variant("Flow++ (variational, mixture, attention)", (),
            "3.165 (full Flow++)"),
    Variant("uniform dequantization", (("model.dequantization", "uniform"),), "3.292"),
    Variant("affine coupling", (("model.coupling", "affine"),), "3.200"),
    Variant("no self-attention", (("model.mixer", "gated_nin"),), "3.193"),
)
_FLOWPP_COLUMNS = (Column("bits_per_dim", "test bits/dim (1 sample)"),
                   Column("iw_bits_per_dim", "test bits/dim (IW)"))
_FLOWPP_COMPARISONS = tuple(Comparison(_FLOWPP_VARIANTS[0].label, v.label, "bits_per_dim")
                            for v in _FLOWPP_VARIANTS[1:])

_VLAE_COLUMNS = (Column("nll_iw_nats", "test NLL (IW), nats", 2),
                 Column("neg_elbo_nats", "-ELBO, nats", 2),
                 Column("kl_nats", "KL, nats", 2),
                 Column("recon_nats", "recon, nats", 2))


def _vlae_variants(paper_af: str, paper_iaf: str):
    return (
        Variant("AF prior, PixelCNN 6 layers (VLAE)", (), paper_af),
        Variant("IAF posterior, Gaussian prior, PixelCNN 6 layers",
                (("model.prior", "normal"), ("model.posterior", "iaf")), paper_iaf),
        Variant("AF prior, PixelCNN 12 layers (larger field)",
                (("model.pixelcnn_layers", "12"),), seeds=(0,)),
    )


def _vlae_comparisons(variants):
    af, iaf, large = (v.label for v in variants[:3])
    return (Comparison(af, iaf, "nll_iw_nats"), Comparison(large, af, "kl_nats"))


# The presets floor each latent element's batch-mean KL (the IAF code's grouping); this arm
# floors the total instead (flowzoo/configs/vlae.py says why the presets do not).
_TOTAL_FREE_BITS = Variant("AF prior, PixelCNN 6 layers, free bits on the total KL",
                           (("model.free_bits_grouping", "total"),), seeds=(0,))
_STATIC = _vlae_variants("79.03 (KL 13.3)", "79.88") + (_TOTAL_FREE_BITS,)
_CALTECH = _vlae_variants("77.36", "")


def _cpu_suite() -> Suite:
    flowpp = Claim(
        key="flowpp_mnist", title="Flow++ on MNIST: the ablation order",
        statement="Variational dequantization beats uniform, logistic-mixture coupling beats "
                  "affine, and self-attention helps (the paper's CIFAR-10 ablation: each "
                  "change lowers bits/dim at the same budget).",
        config=f"{FLOWPP_MNIST}:cpu", variants=_FLOWPP_VARIANTS, seeds=(0,),
        columns=_FLOWPP_COLUMNS, comparisons=_FLOWPP_COMPARISONS, unit="bits/dim",
        overrides=(("train.num_steps", "400"), ("train.checkpoint_every", "100")),
        paper_note="paper: CIFAR-10 ablation at 31-32M parameters, not converged, one "
                   "training budget for all four")
    static = Claim(
        key="vlae_static_mnist", title="VLAE on static binarized MNIST",
        statement="An AF prior beats an IAF posterior at equal size (0.6 nats on test in the "
                  "paper), and a larger PixelCNN receptive field leaves less in the latent "
                  "code (smaller KL): the code is lossy and the field sets what it keeps.",
        config=f"{VLAE_STATIC_MNIST}:cpu", variants=_STATIC, seeds=(0, 1),
        columns=_VLAE_COLUMNS, comparisons=_vlae_comparisons(_STATIC), unit="nats",
        overrides=(("train.num_steps", "500"), ("train.checkpoint_every", "250")),
        paper_note="paper: test NLL with 4,096 importance samples after full training")
    caltech = Claim(
        key="vlae_caltech", title="VLAE on Caltech-101 Silhouettes",
        statement="The same comparisons on a smaller binary dataset (4,100 + 2,264 training "
                  "images).",
        config=f"{VLAE_CALTECH}:cpu", variants=_CALTECH, seeds=(0,),
        columns=_VLAE_COLUMNS, comparisons=_vlae_comparisons(_CALTECH), unit="nats",
        overrides=(("train.num_steps", "400"), ("train.checkpoint_every", "200")),
        paper_note="paper: VLAE 77.36 nats; it gives no IAF or receptive-field ablation here")
    sweeps = (
        IWSweep("vlae_static_mnist", _STATIC[0].label, 0, (1, 16, 256, 4096), 32,
                "nll_iw_nats", "nats", chunk=64, batch_size=32),
        IWSweep("flowpp_mnist", _FLOWPP_VARIANTS[0].label, 0, (1, 16, 256, 4096), 8,
                "iw_bits_per_dim", "bits/dim", chunk=32, batch_size=8),
    )
    return Suite("cpu", (flowpp, static, caltech), sweeps)


def _quick_suite() -> Suite:
    """Every stage of the cpu suite (train, resume, eval, the IW sweep, the page and its
    figures) on tiny models: two variants of one claim per family, on the smallest data."""
    flowpp = Claim(
        key="flowpp_mnist", title="Flow++ on MNIST (quick: pipeline check only)",
        statement="Variational beats uniform dequantization.",
        config=f"{FLOWPP_MNIST}:smoke", variants=_FLOWPP_VARIANTS[:2], seeds=(0,),
        columns=_FLOWPP_COLUMNS[:1], comparisons=_FLOWPP_COMPARISONS[:1], unit="bits/dim",
        overrides=(("train.num_steps", "4"), ("train.eval_every", "1000"),
                   ("train.log_every", "2"), ("eval.max_examples", "16"),
                   ("eval.batch_size", "16"), ("model.iw_samples", "2"),
                   ("model.iw_chunk", "2"), ("eval.num_samples", "4")))
    caltech = Claim(
        key="vlae_caltech", title="VLAE on Caltech-101 Silhouettes (quick: pipeline check only)",
        statement="An AF prior beats an IAF posterior.",
        config=f"{VLAE_CALTECH}:smoke",
        variants=(_CALTECH[0], dataclasses.replace(_CALTECH[1], seeds=(0,))), seeds=(0, 1),
        columns=_VLAE_COLUMNS, comparisons=_vlae_comparisons(_CALTECH)[:1], unit="nats",
        overrides=(("train.num_steps", "6"), ("train.eval_every", "1000"),
                   ("train.log_every", "3"), ("eval.max_examples", "32")))
    sweeps = (IWSweep("vlae_caltech", _CALTECH[0].label, 0, (1, 4), 16, "nll_iw_nats", "nats",
                      chunk=4, batch_size=16),)
    return Suite("quick", (flowpp, caltech), sweeps)


SUITES = {"cpu": _cpu_suite, "quick": _quick_suite}


def suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"Unknown suite {name!r}; choose one of {sorted(SUITES)}.")
    return SUITES[name]()
