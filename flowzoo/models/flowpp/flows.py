"""Flow++'s main flow and its variational dequantizer, from flowzoo bijectors.

Main flow (data -> latent, the normalizing direction):

    ImageToLogit(num_levels)
    -> steps_full     x step(StripeSplit)      at H x W x C
    -> Squeeze (space_to_depth 2x2)            -> H/2 x W/2 x 4C
    -> steps_channel  x step(ChannelSplit)     (2C + 2C)
    -> steps_squeezed x step(StripeSplit)      at H/2 x W/2 x 4C

with no dimensions factored out; the latent is the whole H/2 x W/2 x 4C tensor.  One step
is ActNorm (per element) on each half -> 1x1 conv on each half (its own C_half x C_half
matrix per half, never mixing the halves) -> coupling -> swap of the halves, as in the
official code, which keeps the halves as a tuple and flips it after every coupling.  Here
the image stays merged (the split is a fixed, exact permutation re-applied by every layer)
and the steps of each group run as one ``ScanChain``: one step body to compile, parameters
stacked on a leading axis of length ``steps``.

Dequantizer q(u | x): a context network on x, then a noise flow
eps ~ N(0, I) -> 4 x [ActNorm, 1x1 conv, coupling fed the context] -> sigmoid -> u.
Its bijector's ``forward`` is the *generative* direction eps -> u (the cheap one, used in
training, as in the official code); ``inverse`` recovers eps from u by bisection.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from flowzoo import bijectors as fb
from flowzoo import distributions as fd
from flowzoo.models.flowpp import nets


def coupling_inner(cfg):
    if cfg.coupling == "mixture":
        return fb.MixtureCDFInner(num_components=cfg.num_components)
    if cfg.coupling == "affine":
        return fb.AffineInner(log_scale_fn="tanh")
    raise ValueError(f"config.model.coupling must be 'mixture' or 'affine', got {cfg.coupling!r}.")


def conditioner_settings(cfg, filters, blocks):
    """Keyword arguments of :class:`nets.CouplingNet` shared by the main flow and the
    dequantizer's noise flow; only the width and depth differ between the two."""
    return dict(filters=filters, blocks=blocks, attention=cfg.attention,
                num_heads=cfg.num_heads, dropout_rate=cfg.dropout,
                scan_blocks=cfg.scan_blocks, remat=cfg.remat,
                attention_loop=cfg.attention_loop)


def flow_steps(num_steps, split, half_channels, inner, net_kwargs, index, scan=True):
    """``num_steps`` Flow++ steps on one split, as one :class:`~flowzoo.bijectors.ScanChain`
    (compiled once; ``scan=False`` unrolls it, the same function and parameters).

    One step: ActNorm per half -> 1x1 conv per half -> coupling (x2 given x1) -> swap the
    halves, so the next step transforms the other half (the official code's tuple flip).
    After an odd number of steps one more swap puts the halves back in place.  ``index``
    (static) and the step number (folded into the dropout key) pick the dropout masks.
    """
    if num_steps == 0:
        return []
    net = nets.CouplingNet(out_features=half_channels * inner.num_params, index=index,
                           **net_kwargs)
    step = fb.Chain((fb.PerHalf(split, fb.ActNorm(per="element")),
                     fb.PerHalf(split, fb.Invertible1x1Conv(init_kind="identity_noise",
                                                            noise_scale=1e-3)),
                     fb.Coupling(split, net, inner),
                     fb.SwapHalves(split)))
    layers = [fb.ScanChain(step, num_steps, fold_keys=("dropout_key",), unroll=not scan)]
    if num_steps % 2:
        layers.append(fb.SwapHalves(split))
    return layers


def check_image_shape(image_shape):
    if len(image_shape) != 3:
        raise ValueError(f"Flow++ expects (H, W, C) images, got shape {image_shape}.")
    h, w, _ = image_shape
    if h % 2 or w % 2:
        raise ValueError(f"Flow++ needs an even height and width (for the squeeze and the "
                         f"column split), got image shape {image_shape}; crop or pad.")


def main_flow(cfg, image_shape, num_levels) -> fb.Chain:
    check_image_shape(image_shape)
    c = image_shape[-1]
    inner = coupling_inner(cfg)
    net_kwargs = conditioner_settings(cfg, cfg.filters, cfg.blocks)
    n1, n2, n3 = cfg.steps_full, cfg.steps_channel, cfg.steps_squeezed
    layers = [fb.ImageToLogit(num_levels=num_levels, alpha=cfg.alpha)]
    layers += flow_steps(n1, fb.StripeSplit(), c, inner, net_kwargs, 0, cfg.scan_steps)
    layers += [fb.Squeeze(factor=2)]
    layers += flow_steps(n2, fb.ChannelSplit(), 2 * c, inner, net_kwargs, 1, cfg.scan_steps)
    layers += flow_steps(n3, fb.StripeSplit(), 4 * c, inner, net_kwargs, 2, cfg.scan_steps)
    return fb.Chain(tuple(layers))


def latent_shape(image_shape):
    h, w, c = image_shape
    return (h // 2, w // 2, 4 * c)


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
    net_kwargs = conditioner_settings(cfg, cfg.dequant_filters, cfg.dequant_blocks)
    layers = flow_steps(cfg.dequant_steps, fb.StripeSplit(), c, inner, net_kwargs, 100,
                        cfg.scan_steps)
    layers += [fb.Sigmoid(event_ndims=3)]
    context_net = nets.ContextNet(filters=cfg.dequant_context_filters,
                                  blocks=cfg.dequant_context_blocks, dropout_rate=cfg.dropout)
    return VariationalDequantizer(context_net, fb.Chain(tuple(layers)), num_levels)
