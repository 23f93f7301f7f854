"""Flow++'s main flow and its variational dequantizer, from flowzoo bijectors.

Main flow (data -> latent, the normalizing direction): ``ImageToLogit(num_levels)``, then the
groups of ``cfg.layout``, a comma-separated list of ``split:steps`` groups and ``squeeze``
(space_to_depth 2x2, TensorFlow's channel order).  The official CIFAR-10 layout is

    stripe:4, squeeze, channel:2, stripe:3     (32x32x3 -> 16x16x12)

with no dimensions factored out; the latent is the whole squeezed tensor.  Splits:
``stripe`` (the official code's "checkerboard": alternating columns), ``channel`` (halves of
the channels), ``checkerboard`` (a true one; not in any official model).  One step is
ActNorm (per element) on each half -> 1x1 conv on each half (its own C_half x C_half matrix
per half, never mixing the halves; off with ``pointwise=False``, as in the official ImageNet
models) -> coupling -> swap of the halves, as in the official code, which keeps the halves
as a tuple and flips it after every coupling.  Here the image stays merged (the split is a
fixed, exact permutation re-applied by every layer) and the steps of each group run as one
``ScanChain``: one step body to compile, parameters stacked on a leading axis of length
``steps``.  After a group of an odd number of steps the official code merges the flipped
halves; flowzoo swaps them back first unless ``swap_back_odd=False`` (the official ImageNet
configs, whose odd groups sit before other groups and so change the function).

Dequantizer q(u | x): a context network on x, then a noise flow
eps ~ N(0, I) -> dequant_steps x [ActNorm, 1x1 conv, coupling fed the context] -> sigmoid
-> u.  Its bijector's ``forward`` is the *generative* direction eps -> u (the cheap one,
used in training, as in the official code); ``inverse`` recovers eps from u by bisection.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from flowzoo import bijectors as fb
from flowzoo import distributions as fd
from flowzoo.models import precision
from flowzoo.models.flowpp import nets


SPLITS = {"stripe": fb.StripeSplit(), "channel": fb.ChannelSplit(),
          "checkerboard": fb.CheckerboardSplit()}


def parse_layout(layout: str):
    """``"stripe:4,squeeze,channel:2"`` -> ``[("stripe", 4), ("squeeze", 0), ...]``."""
    groups = []
    for item in (t.strip() for t in str(layout).split(",")):
        name, _, steps = item.partition(":")
        if name == "squeeze" and not steps:
            groups.append(("squeeze", 0))
        elif name in SPLITS and steps.isdigit() and int(steps) > 0:
            groups.append((name, int(steps)))
        else:
            raise ValueError(f"config.model.layout: bad group {item!r} in {layout!r}; use "
                             f"comma-separated 'squeeze' and 'SPLIT:STEPS' with SPLIT one of "
                             f"{sorted(SPLITS)}, e.g. 'stripe:4,squeeze,channel:2,stripe:3'.")
    if not any(steps for _, steps in groups):
        raise ValueError(f"config.model.layout {layout!r} has no flow steps.")
    return groups


def coupling_inner(cfg):
    if cfg.coupling == "mixture":
        return fb.MixtureCDFInner(num_components=cfg.num_components)
    if cfg.coupling == "affine":
        return fb.AffineInner(log_scale_fn="tanh")
    raise ValueError(f"config.model.coupling must be 'mixture' or 'affine', got {cfg.coupling!r}.")


def conditioner_settings(cfg, filters, blocks, mixer):
    """Keyword arguments of :class:`nets.CouplingNet` shared by the main flow and the
    dequantizer's noise flow; the width, depth and mixer may differ between the two."""
    return dict(filters=filters, blocks=blocks, mixer=mixer, num_heads=cfg.num_heads,
                dropout_rate=cfg.dropout, scan_blocks=cfg.scan_blocks, remat=cfg.remat,
                attention_loop=cfg.attention_loop, weight_norm=cfg.weight_norm,
                elu_before_output=cfg.elu_before_output,
                dtype=precision.network_dtype(cfg.compute_dtype),
                operand_dtype=precision.operand_dtype(cfg.compute_dtype))


def flow_steps(num_steps, split, half_channels, inner, net_kwargs, index, scan=True,
               pointwise=True, swap_back_odd=True):
    """``num_steps`` Flow++ steps on one split, as one :class:`~flowzoo.bijectors.ScanChain`
    (compiled once; ``scan=False`` unrolls it, the same function and parameters).

    One step: ActNorm per half [-> 1x1 conv per half] -> coupling (x2 given x1) -> swap the
    halves, so the next step transforms the other half (the official code's tuple flip).
    After an odd number of steps one more swap puts the halves back in place, unless
    ``swap_back_odd`` is False.  ``index`` (static) and the step number (folded into the
    dropout key) pick the dropout masks.
    """
    if num_steps == 0:
        return []
    net = nets.CouplingNet(out_features=half_channels * inner.num_params, index=index,
                           **net_kwargs)
    layers = [fb.PerHalf(split, fb.ActNorm(per="element"))]
    if pointwise:
        layers.append(fb.PerHalf(split, fb.Invertible1x1Conv(init_kind="identity_noise",
                                                             noise_scale=1e-3)))
    step = fb.Chain(tuple(layers) + (fb.Coupling(split, net, inner), fb.SwapHalves(split)))
    layers = [fb.ScanChain(step, num_steps, fold_keys=("dropout_key",), unroll=not scan)]
    if num_steps % 2 and swap_back_odd:
        layers.append(fb.SwapHalves(split))
    return layers


def _check_even(size, what, image_shape, layout):
    if size % 2:
        raise ValueError(f"Flow++ layout {layout!r} needs an even {what}, got image shape "
                         f"{image_shape}; crop or pad, or change config.model.layout.")


def latent_shape(image_shape, layout):
    """The latent's (H, W, C): the image after the layout's squeezes."""
    h, w, c = image_shape
    for name, _ in parse_layout(layout):
        if name == "squeeze":
            h, w, c = h // 2, w // 2, 4 * c
    return (h, w, c)


def check_image_shape(image_shape, layout="stripe:1"):
    """(H, W, C) that every squeeze and split of ``layout`` can take."""
    if len(image_shape) != 3:
        raise ValueError(f"Flow++ expects (H, W, C) images, got shape {image_shape}.")
    h, w, c = image_shape
    # The dequantizer's context network always splits x into stripes.
    _check_even(w, "width", image_shape, layout)
    for name, _ in parse_layout(layout):
        if name == "squeeze":
            _check_even(h, "height", image_shape, layout)
            _check_even(w, "width", image_shape, layout)
            h, w, c = h // 2, w // 2, 4 * c
        elif name in ("stripe", "checkerboard"):
            _check_even(w, "width", image_shape, layout)
            if name == "checkerboard":
                _check_even(h, "height", image_shape, layout)
        else:
            _check_even(c, "channel count", image_shape, layout)


def main_flow(cfg, image_shape, num_levels) -> fb.Chain:
    check_image_shape(image_shape, cfg.layout)
    c = image_shape[-1]
    inner = coupling_inner(cfg)
    net_kwargs = conditioner_settings(cfg, cfg.filters, cfg.blocks, cfg.mixer)
    layers = [fb.ImageToLogit(num_levels=num_levels, alpha=cfg.alpha)]
    group = 0
    for name, steps in parse_layout(cfg.layout):
        if name == "squeeze":
            layers.append(fb.Squeeze(factor=2))
            c *= 4
            continue
        half = c // 2 if name == "channel" else c
        layers += flow_steps(steps, SPLITS[name], half, inner, net_kwargs, group,
                             cfg.scan_steps, cfg.pointwise, cfg.swap_back_odd)
        group += 1
    return fb.Chain(tuple(layers))


def standard_normal_log_prob(z):
    """log N(z; 0, I) summed over the (H, W, C) event."""
    return fd.StandardNormal(tuple(z.shape[-3:])).log_prob((), z)


@dataclasses.dataclass(frozen=True)
class VariationalDequantizer:
    """q(u | x) for integer images x: ``sample`` gives u in (0, 1)^D and log q(u | x).

    params: ``{'context': context net, 'noise': noise flow}``.
    """

    context_net: nets.ContextNet
    noise_flow: fb.Chain  # forward: eps -> u
    num_levels: int
    split: Any = fb.StripeSplit()

    def _halves(self, x):
        scaled = x / self.num_levels - 0.5
        return jnp.concatenate(self.split.split(scaled), axis=-1)

    def context(self, params, x, dropout_key=None):
        return self.context_net.apply(params["context"], self._halves(x),
                                      dropout_key=dropout_key)

    def init(self, key, x, eps, dropout_key=None):
        """Data-dependent init on (x, eps), with dropout when ``dropout_key`` is given."""
        k_context, k_noise = jax.random.split(key)
        halves = self._halves(x)
        context_params = self.context_net.init({"params": k_context}, halves,
                                               dropout_key=dropout_key)
        context = self.context({"context": context_params}, x, dropout_key)
        noise_params = self.noise_flow.init(k_noise, eps, context=context,
                                            dropout_key=dropout_key)
        return {"context": context_params, "noise": noise_params}

    def sample(self, params, x, eps, dropout_key=None):
        """u = flow(eps; x) and log q(u | x) = log N(eps) - log|det du/deps|."""
        context = self.context(params, x, dropout_key)
        u, log_det = self.noise_flow.forward(params["noise"], eps, context=context,
                                             dropout_key=dropout_key)
        return u, standard_normal_log_prob(eps) - log_det

    def noise_of(self, params, x, u):
        """The eps that gives u (the exact inverse, by bisection in the couplings)."""
        context = self.context(params, x)
        eps, _ = self.noise_flow.inverse(params["noise"], u, context=context)
        return eps


def variational_dequantizer(cfg, image_shape, num_levels) -> VariationalDequantizer:
    check_image_shape(image_shape)
    c = image_shape[-1]
    inner = coupling_inner(cfg)
    mixer = cfg.dequant_mixer or cfg.mixer
    net_kwargs = conditioner_settings(cfg, cfg.dequant_filters, cfg.dequant_blocks, mixer)
    layers = flow_steps(cfg.dequant_steps, fb.StripeSplit(), c, inner, net_kwargs, 100,
                        cfg.scan_steps, cfg.pointwise, cfg.swap_back_odd)
    layers += [fb.Sigmoid(event_ndims=3)]
    context_net = nets.ContextNet(filters=cfg.dequant_context_filters,
                                  blocks=cfg.dequant_context_blocks, dropout_rate=cfg.dropout,
                                  norm=cfg.dequant_context_norm,
                                  attention=cfg.dequant_context_attention,
                                  num_heads=cfg.num_heads, attention_loop=cfg.attention_loop,
                                  weight_norm=cfg.weight_norm,
                                  dtype=precision.network_dtype(cfg.compute_dtype),
                                  operand_dtype=precision.operand_dtype(cfg.compute_dtype))
    return VariationalDequantizer(context_net, fb.Chain(tuple(layers)), num_levels)
