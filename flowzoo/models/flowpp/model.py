"""Flow++ as a trainer :class:`~flowzoo.training.model.Model`, plus encode / decode.

Objective (nats per example, then bits/dim):

    y = x + u,  u ~ q(u | x)                 (variational; or u ~ U(0, 1)^D)
    log p(x) >= log N(z) + log|det dz/dy| - log q(u | x),   z = main_flow(y)

where the main flow starts with ImageToLogit, so its log-det is part of the bound.  The
importance-weighted bound uses K dequantization samples: log mean_k exp(w_k).  The training
loss's value is the batch's mean bits/dim; its gradient is that of ``cfg.loss_scale``
("nats": the official mean negative log-likelihood in nats; see ``training_loss``).

Parameters: ``{'main': ..., 'dequant': {'context': ..., 'noise': ...}}`` (``dequant`` is
absent with uniform dequantization).  Randomness: dequantization noise comes from
``example_keys`` (per example, independent of how the batch is sharded), and so do the
dropout masks: each example's from its own key, so jit, sharded jit and pmap agree.
``init`` is a pure function of (key, batch): the data-dependent init (with the training
dropout, as official), or the official checkpoint ``cfg.init_from_official``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from flowzoo import _compensated
from flowzoo.models import precision
from flowzoo.models.flowpp import architectures, flows, nets, official
from flowzoo.models.flowpp.attention import check_loop
from flowzoo.model import Model, example_keys

_DEFAULTS = architectures.OFFICIAL_MODEL
# What the optimizer differentiates (module docstring); the loss value is bits/dim either way.
LOSS_SCALES = ("nats", "bits_per_dim")


@dataclasses.dataclass(frozen=True)
class _Cfg:
    """The model config with defaults filled in (hashable, static)."""

    filters: int
    blocks: int
    num_components: int
    coupling: str
    mixer: str
    num_heads: int
    dropout: float
    layout: str
    pointwise: bool
    swap_back_odd: bool
    weight_norm: bool
    elu_before_output: bool
    alpha: float
    dequantization: str
    dequant_filters: int
    dequant_blocks: int
    dequant_steps: int
    dequant_mixer: str | None
    dequant_context_filters: int
    dequant_context_blocks: int
    dequant_context_norm: bool
    dequant_context_attention: bool
    compute_dtype: str
    iw_samples: int
    iw_chunk: int
    sample_temperature: float
    loss_scale: str
    init_from_official: str | None
    official_ema: bool
    scan_blocks: bool
    scan_steps: bool
    remat: bool
    attention_loop: str


def _resolve(model_config) -> _Cfg:
    given = dict(model_config)
    given.pop("name", None)
    unknown = sorted(set(given) - set(_DEFAULTS))
    if unknown:
        raise KeyError(f"Unknown flowpp config keys {unknown}; valid keys: {sorted(_DEFAULTS)}.")
    cfg = _Cfg(**{**_DEFAULTS, **given})
    if cfg.dequantization not in ("variational", "uniform"):
        raise ValueError(f"config.model.dequantization must be 'variational' or 'uniform', "
                         f"got {cfg.dequantization!r}.")
    check_loop(cfg.attention_loop)
    precision.network_dtype(cfg.compute_dtype)  # checks the value
    for key in ("mixer", "dequant_mixer"):
        value = getattr(cfg, key)
        if value not in nets.MIXERS and not (key == "dequant_mixer" and value is None):
            raise ValueError(f"config.model.{key} must be one of {nets.MIXERS}, got {value!r}.")
    flows.parse_layout(cfg.layout)
    if cfg.loss_scale not in LOSS_SCALES:
        raise ValueError(f"config.model.loss_scale must be one of {LOSS_SCALES}, "
                         f"got {cfg.loss_scale!r}.")
    if cfg.iw_samples < 1 or cfg.iw_chunk < 1:
        raise ValueError("config.model.iw_samples and iw_chunk must be >= 1.")
    return cfg


@dataclasses.dataclass(frozen=True)
class FlowPP:
    """The static parts of a Flow++ model (what ``encode``/``decode`` need)."""

    main: Any  # fb.Chain, forward: dequantized image y -> latent z
    dequantizer: Any  # flows.VariationalDequantizer, or None for uniform dequantization
    image_shape: tuple
    num_levels: int
    cfg: _Cfg

    @property
    def latent_shape(self):
        return flows.latent_shape(self.image_shape, self.cfg.layout)

    @property
    def num_dims(self) -> int:
        return math.prod(self.image_shape)


def make_flow(model_config, image_shape, num_levels) -> FlowPP:
    cfg = _resolve(model_config)
    image_shape = tuple(int(s) for s in image_shape)
    main = flows.main_flow(cfg, image_shape, num_levels)
    dequantizer = None
    if cfg.dequantization == "variational":
        dequantizer = flows.variational_dequantizer(cfg, image_shape, num_levels)
    return FlowPP(main, dequantizer, image_shape, int(num_levels), cfg)


def _noise(flow: FlowPP, keys):
    """Per-example base noise of the dequantizer: N(0, I) (variational) or U(0, 1)."""
    draw = jax.random.normal if flow.dequantizer is not None else jax.random.uniform
    return jax.vmap(lambda k: draw(k, flow.image_shape, jnp.float32))(keys)


def _dequantize(flow: FlowPP, params, x, noise, dropout_key=None):
    """u and log q(u | x) (u = noise and log q = 0 for uniform dequantization)."""
    if flow.dequantizer is None:
        return noise, jnp.zeros(x.shape[:1], x.dtype)
    return flow.dequantizer.sample(params["dequant"], x, noise, dropout_key)


def _forward_pass(flow: FlowPP, params, x, noise, dropout_key=None):
    """One dequantization sample: (log p(x + u) - log q(u | x) in nats, u, y = x + u, z)."""
    u, log_q = _dequantize(flow, params, x, noise, dropout_key)
    y = x + u
    z, log_det = flow.main.forward(params["main"], y, dropout_key=dropout_key)
    return flows.standard_normal_log_prob(z) + log_det - log_q, u, y, z


def _log_weight(flow: FlowPP, params, x, noise, dropout_key=None):
    """log p(x + u) - log q(u | x) in nats, per example (one importance weight)."""
    return _forward_pass(flow, params, x, noise, dropout_key)[0]


def _images(batch):
    return batch["image"].astype(jnp.float32)


def _init_key(key):
    """A key of the 'rbg' implementation derived from ``key`` for drawing initial weights.

    Threefry draws each compile into a sizeable graph, and a Flow++ init has hundreds of
    them; 'rbg' draws are one RngBitGenerator op each, which makes the init compile several
    times faster on CPU.  Still a pure function of ``key``.
    """
    return jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl=INIT_KEY_IMPL)


INIT_KEY_IMPL = "rbg"


def fresh_init(flow: FlowPP, key, batch):
    """Data-dependent init: a pure function of (key, batch).  The init pass runs with the
    training dropout (``cfg.dropout``), as the official code's does."""
    x = _images(batch)
    k_noise, k_dequant, k_main = jax.random.split(key, 3)
    k_dequant, k_main = _init_key(k_dequant), _init_key(k_main)
    dropout_key = _dropout_keys(flow, jax.random.fold_in(key, 3), batch)
    noise = _noise(flow, example_keys(k_noise, batch["index"]))
    params = {}
    if flow.dequantizer is not None:
        params["dequant"] = flow.dequantizer.init(k_dequant, x, noise, dropout_key)
    u, _ = _dequantize(flow, params, x, noise, dropout_key)
    params["main"] = flow.main.init(k_main, x + u, dropout_key=dropout_key)
    return params


def init(flow: FlowPP, key, batch):
    """``fresh_init``, or the official checkpoint ``cfg.init_from_official`` converted
    (``official.py``; checked when the init is traced, read when it runs)."""
    cfg = flow.cfg
    if cfg.init_from_official is None:
        return fresh_init(flow, key, batch)
    template = jax.eval_shape(lambda k, b: fresh_init(flow, k, b), key, batch)
    return official.params_in_program(flow, cfg.init_from_official, cfg.official_ema, template)


def template_params(flow: FlowPP):
    """Shapes and dtypes of ``flow``'s parameters (an abstract init; no compute)."""
    n = 2
    batch = {"image": jax.ShapeDtypeStruct((n,) + flow.image_shape, jnp.uint8),
             "index": jax.ShapeDtypeStruct((n,), jnp.int32)}
    return jax.eval_shape(lambda k, b: fresh_init(flow, k, b), jax.random.PRNGKey(0), batch)


def official_params(flow: FlowPP, source, *, ema=False):
    """An official TensorFlow checkpoint (a prefix, or a mapping name -> array) as
    ``flow``'s params; ``ema``: its EMA shadows.  Every official variable is used once; a
    missing, extra or misshapen one is an error naming it (``official.py``)."""
    return official.official_params(flow, source, ema=ema, template=template_params(flow))


def _dropout_keys(flow: FlowPP, key, batch):
    """One dropout key per example (``example_keys``), or None without dropout.  Drawn from
    one step key for the whole batch instead, the masks would follow the batch's shape: a
    pmap device, seeing only its slice, would draw the first examples' masks for its own."""
    return example_keys(key, batch["index"]) if flow.cfg.dropout > 0 else None


def _bits(flow: FlowPP, log_weight):
    return -log_weight / (flow.num_dims * math.log(2.0))


def training_loss(flow: FlowPP, log_weight):
    """The batch's mean bits/dim as a value, differentiated on ``cfg.loss_scale``.

    "nats" (the official code's loss): the gradient is that of the mean negative
    log-likelihood in nats, so gradient clipping and Adam's epsilon act on the official
    scale (a bits/dim gradient is ``D ln 2`` = 2,129 times smaller on CIFAR-10).  The value
    stays exactly bits/dim, so that logs and learning curves read in bits/dim.
    "bits_per_dim": value and gradient of the mean bits/dim."""
    bpd = jnp.mean(_bits(flow, log_weight))
    if flow.cfg.loss_scale == "bits_per_dim":
        return bpd
    nats = -jnp.mean(log_weight)
    return jax.lax.stop_gradient(bpd) + (nats - jax.lax.stop_gradient(nats))


def log_mean_exp(weights):
    """log mean_k exp(w_k) over axis 0 as accurately as the official float64 NumPy: in
    float64 when x64 is on, else around the max with a compensated sum
    (``flowzoo._compensated``) and one rounding to the weights' dtype."""
    num = weights.shape[0]
    if jax.config.jax_enable_x64:
        wide = weights.astype(jnp.float64)
        return (jax.nn.logsumexp(wide, axis=0) - math.log(num)).astype(weights.dtype)
    shift = jax.lax.stop_gradient(jnp.max(weights, axis=0))
    total = _compensated.accurate_sum(jnp.exp(weights - shift), axis=0)
    return shift + (jnp.log(total) - math.log(num))


def iw_log_likelihood(flow: FlowPP, params, batch, key, num_samples, chunk):
    """log mean_k exp(w_k) over ``num_samples`` dequantization samples per example,
    computed ``chunk`` samples at a time under ``lax.map`` (memory of one chunk)."""
    x = _images(batch)
    base = example_keys(key, batch["index"])  # (B,) keys
    chunk = min(chunk, num_samples)
    num_chunks = -(-num_samples // chunk)
    b = x.shape[0]

    def one_chunk(c):
        ids = c * chunk + jnp.arange(chunk)
        keys = jax.vmap(lambda i: jax.vmap(lambda k: jax.random.fold_in(k, i))(base))(ids)
        noise = _noise(flow, keys.reshape((chunk * b,) + keys.shape[2:]))
        xs = jnp.broadcast_to(x, (chunk,) + x.shape).reshape((chunk * b,) + x.shape[1:])
        return _log_weight(flow, params, xs, noise).reshape(chunk, b)

    weights = jax.lax.map(one_chunk, jnp.arange(num_chunks)).reshape(-1, b)
    return log_mean_exp(weights[:num_samples])  # the last chunk may run past num_samples


def encode(flow: FlowPP, params, images, key=None, index=None):
    """uint8 images (B, H, W, C) -> latents (B, H/2, W/2, 4C).

    The dequantization noise is sampled with ``key`` (per example, folding in ``index``,
    default 0..B-1); ``key=None`` uses eps = 0 (variational) or u = 0.5 (uniform)."""
    x = jnp.asarray(images).astype(jnp.float32)
    if key is None:
        fill = 0.0 if flow.dequantizer is not None else 0.5
        noise = jnp.full(x.shape, fill, jnp.float32)
    else:
        index = jnp.arange(x.shape[0]) if index is None else index
        noise = _noise(flow, example_keys(key, index))
    u, _ = _dequantize(flow, params, x, noise)
    return flow.main.forward(params["main"], x + u)[0]


def decode_dequantized(flow: FlowPP, params, z):
    """Latents -> dequantized images y in [0, num_levels) (float)."""
    return flow.main.inverse(params["main"], z)[0]


def decode(flow: FlowPP, params, z):
    """Latents -> uint8 images (the floor of the dequantized image)."""
    y = decode_dequantized(flow, params, z)
    return jnp.clip(jnp.floor(y), 0, flow.num_levels - 1).astype(jnp.uint8)


def _round_trip(flow: FlowPP, params, x, noise, u, y, z):
    """Per-example max |y - y'| of x -> z -> x (y the dequantized image) and, for the
    variational dequantizer, max |eps - eps'| of eps -> u -> eps."""
    y_back = decode_dequantized(flow, params, z)
    out = {"recon_error": jnp.max(jnp.abs(y_back - y), axis=(1, 2, 3))}
    if flow.dequantizer is not None:
        # From u itself: y = x + u rounds u to the resolution of y (~1.5e-5 at 255), a
        # loss of the float format, not of the inverse.
        eps_back = flow.dequantizer.noise_of(params["dequant"], x, u)
        out["dequant_recon_error"] = jnp.max(jnp.abs(eps_back - noise), axis=(1, 2, 3))
    return out


def round_trip_errors(flow: FlowPP, params, batch, key):
    """Round-trip errors (see ``_round_trip``) for one dequantization sample."""
    x = _images(batch)
    noise = _noise(flow, example_keys(key, batch["index"]))
    _, u, y, z = _forward_pass(flow, params, x, noise)
    return _round_trip(flow, params, x, noise, u, y, z)


def build(model_config, image_shape, num_levels) -> Model:
    flow = make_flow(model_config, image_shape, num_levels)
    cfg = flow.cfg
    if cfg.init_from_official is not None:  # a bad path fails now, not after compiling
        official.read_variable_shapes(cfg.init_from_official)

    def loss(params, batch, key):
        noise_key, dropout_key = jax.random.split(key)
        noise = _noise(flow, example_keys(noise_key, batch["index"]))
        log_weight = _log_weight(flow, params, _images(batch), noise,
                                 _dropout_keys(flow, dropout_key, batch))
        bpd = jnp.mean(_bits(flow, log_weight))
        return training_loss(flow, log_weight), {"bits_per_dim": bpd}

    def evaluate(params, batch, key):
        k_single, k_iw = jax.random.split(key)
        x = _images(batch)
        noise = _noise(flow, example_keys(k_single, batch["index"]))
        log_weight, u, y, z = _forward_pass(flow, params, x, noise)  # shared by both metrics
        metrics = {"bits_per_dim": _bits(flow, log_weight)}
        metrics["iw_bits_per_dim"] = _bits(flow, iw_log_likelihood(
            flow, params, batch, k_iw, cfg.iw_samples, cfg.iw_chunk))
        metrics.update(_round_trip(flow, params, x, noise, u, y, z))
        return metrics

    def sample(params, key, n):
        z = cfg.sample_temperature * jax.random.normal(key, (n,) + flow.latent_shape,
                                                       jnp.float32)
        return decode(flow, params, z)

    return Model(init=lambda key, batch: init(flow, key, batch), loss=loss,
                 evaluate=evaluate, sample=sample)
