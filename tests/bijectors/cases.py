"""The conformance registry: every exported bijector class needs cases here.

A case builds, from a key and a dtype, a bijector, its parameters (fresh random
values, never the identity), an input batch ``x`` of batch size 4 and the
keyword context.  ``test_conformance.py`` runs every check on every case, and
fails if any bijector exported by ``flowzoo.bijectors`` has no case.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowzoo import bijectors as fb

BATCH = 4


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    cls: type
    make: Callable  # (key, dtype) -> (bijector, params, x, context)
    event_ndims: int


def _cast(tree, dtype):
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _perturb(key, tree, scale):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [a + scale * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)])


class _ConvConditioner(nn.Module):
    """A tiny conv conditioner (Flow++'s are in flowzoo.models); optional context."""
    features: int

    @nn.compact
    def __call__(self, x, context=None):
        h = nn.Conv(8, (3, 3))(x)
        if context is not None:
            h = h + nn.Dense(8)(context)[..., None, None, :]
        h = nn.elu(h)
        return nn.Conv(self.features, (3, 3),
                       kernel_init=nn.initializers.normal(0.05))(h)


def _mlp_conditioner(features):
    """A conditioner from two pure functions (no Flax), for vector inputs."""
    def init(key, x1):
        k1, k2 = jax.random.split(key)
        return {"w1": 0.5 * jax.random.normal(k1, (x1.shape[-1], 16), x1.dtype),
                "w2": 0.3 * jax.random.normal(k2, (16, features), x1.dtype)}

    def apply(params, x1):
        return jnp.tanh(x1 @ params["w1"]) @ params["w2"]
    return fb.Conditioner(init=init, apply=apply)


class _MaskedConditioner(nn.Module):
    """An autoregressive conditioner for MaskedAutoregressiveAffine (VLAE's MADE and masked
    PixelCNN are in flowzoo.models): raw parameter p of element i (flattened event order) is
    ``sum_{j<i} tanh(x_j) W[j, p, i] (+ a dense projection of context) + b``."""
    num_params: int
    event_ndims: int = 1

    @nn.compact
    def __call__(self, x, context=None):
        event = x.shape[x.ndim - self.event_ndims:]
        d, p = math.prod(event), self.num_params
        w = self.param("w", nn.initializers.normal(0.4), (d, p * d))
        mask = jnp.asarray(np.tile(np.triu(np.ones((d, d)), 1), (1, p)), w.dtype)
        flat = jnp.tanh(x.reshape(x.shape[:x.ndim - self.event_ndims] + (d,)))
        out = flat @ (w * mask) + self.param("b", nn.initializers.normal(0.2), (p * d,))
        if context is not None:
            out = out + nn.Dense(p * d, kernel_init=nn.initializers.normal(0.2))(context)
        # (..., P * D), column p * D + i  ->  (..., *event[:-1], P * C), shift first.
        out = out.reshape(out.shape[:-1] + (p,) + event)
        out = jnp.moveaxis(out, -self.event_ndims - 1, -2)
        return out.reshape(out.shape[:-2] + (p * event[-1],))


def _maf(event_ndims=1, shift_only=False, reverse=False):
    return fb.MaskedAutoregressiveAffine(
        _MaskedConditioner(1 if shift_only else 2, event_ndims), event_ndims=event_ndims,
        shift_only=shift_only, reverse=reverse)


def _normal(key, shape, dtype, scale=1.0, shift=0.0):
    return shift + scale * jax.random.normal(key, shape, dtype)


def _from_init(bijector, shape, pert=0.0, x_fn=None, context_fn=None):
    """Case maker: x from ``x_fn`` (default N(0, 1)), params = init on an
    independent batch, then perturbed by ``pert`` * N(0, 1)."""
    def make(key, dtype):
        kx, ki, kd, kp, kc = jax.random.split(key, 5)
        draw = x_fn or (lambda k, s, d: _normal(k, s, d))
        x = draw(kx, shape, dtype)
        context = context_fn(kc, dtype) if context_fn else {}
        params = _cast(bijector.init(ki, draw(kd, shape, dtype), **context), dtype)
        if pert:
            params = _perturb(kp, params, pert)
        return bijector, params, x, context
    return make


def _mixture_case(k, min_log_scale):
    bij = fb.LogisticMixtureCDF(num_components=k, event_ndims=1)

    def make(key, dtype):
        kl, km, ks, ka, kb, kc, kn = jax.random.split(key, 7)
        shape = (5, k)
        params = {
            "logits": _normal(kl, shape, dtype),
            "means": _normal(km, shape, dtype, 2.0),
            "log_scales": jax.random.uniform(ks, shape, dtype, min_log_scale, 1.0),
            "log_scale": _normal(ka, (5,), dtype, 0.5),
            "shift": _normal(kb, (5,), dtype),
        }
        # x drawn from the mixture, so it lies where the density is not ~0.
        comp = jax.random.categorical(kc, params["logits"], shape=(BATCH, 5))
        mu = params["means"][jnp.arange(5), comp]
        ls = params["log_scales"][jnp.arange(5), comp]
        x = mu + jnp.exp(ls) * jax.random.logistic(kn, (BATCH, 5), dtype)
        return bij, params, x, {}
    return make


def _uniform(lo, hi):
    return lambda k, s, d: jax.random.uniform(k, s, d, lo, hi)


IMG = (BATCH, 4, 4, 2)
IMG3 = (BATCH, 4, 4, 3)
VEC = (BATCH, 5)


def _coupling(split, inner, features, **kw):
    return fb.Coupling(split=split, conditioner=_ConvConditioner(features), inner=inner, **kw)


_image_chain = fb.Chain([
    fb.ActNorm(per="element"),
    fb.Invertible1x1Conv(),
    _coupling(fb.StripeSplit(), fb.MixtureCDFInner(num_components=3), 2 * 11),
    fb.Squeeze(),
    fb.LUInvertible1x1Conv(),
    _coupling(fb.ChannelSplit(), fb.AffineInner(), 4 * 2, swap=True),
])

# A Flow++-like step (norm, 1x1 conv, coupling, swap) repeated under lax.scan.
_scan_step = fb.Chain([
    fb.PerHalf(fb.StripeSplit(), fb.ActNorm(per="element")),
    fb.PerHalf(fb.StripeSplit(), fb.Invertible1x1Conv()),
    _coupling(fb.StripeSplit(), fb.MixtureCDFInner(num_components=3), 2 * 11),
    fb.SwapHalves(fb.StripeSplit()),
])

_vector_context_coupling = fb.Coupling(
    split=fb.ChannelSplit(num_first=2), conditioner=_mlp_conditioner(3 * 5),
    inner=fb.MixtureCDFInner(num_components=1), event_ndims=1)


CASES = [
    Case("affine", fb.Affine, _from_init(fb.Affine(event_ndims=1), VEC, pert=0.5), 1),
    Case("affine_scalar_params", fb.Affine, _from_init(fb.Affine(event_ndims=0), VEC, pert=0.5), 0),
    Case("sigmoid", fb.Sigmoid, _from_init(fb.Sigmoid(event_ndims=1), VEC,
                                           x_fn=lambda k, s, d: _normal(k, s, d, 2.0)), 1),
    Case("sigmoid_elementwise", fb.Sigmoid, _from_init(fb.Sigmoid(), VEC), 0),
    Case("logit", fb.Logit, _from_init(fb.Logit(event_ndims=1), VEC, x_fn=_uniform(0.02, 0.98)), 1),
    Case("image_to_logit_8bit", fb.ImageToLogit,
         _from_init(fb.ImageToLogit(), IMG, x_fn=_uniform(0.0, 256.0)), 3),
    Case("image_to_logit_17_levels", fb.ImageToLogit,
         _from_init(fb.ImageToLogit(num_levels=17), IMG, x_fn=_uniform(0.0, 17.0)), 3),
    Case("mixture_cdf_k4", fb.LogisticMixtureCDF, _mixture_case(4, -2.0), 1),
    Case("mixture_cdf_k32_narrow", fb.LogisticMixtureCDF, _mixture_case(32, -7.0), 1),
    Case("actnorm_element", fb.ActNorm, _from_init(fb.ActNorm(per="element"), IMG, pert=0.2), 3),
    Case("actnorm_channel", fb.ActNorm, _from_init(fb.ActNorm(per="channel"), IMG, pert=0.2), 3),
    Case("conv1x1", fb.Invertible1x1Conv,
         _from_init(fb.Invertible1x1Conv(), IMG3, pert=0.3), 3),
    Case("conv1x1_orthogonal_vectors", fb.Invertible1x1Conv,
         _from_init(fb.Invertible1x1Conv(event_ndims=1, init_kind="orthogonal"), VEC, pert=0.2), 1),
    Case("lu_conv1x1", fb.LUInvertible1x1Conv,
         _from_init(fb.LUInvertible1x1Conv(), IMG3, pert=0.3), 3),
    Case("per_half_actnorm_stripes", fb.PerHalf,
         _from_init(fb.PerHalf(fb.StripeSplit(), fb.ActNorm()), IMG, pert=0.2), 3),
    Case("per_half_conv1x1_channels", fb.PerHalf,
         _from_init(fb.PerHalf(fb.ChannelSplit(), fb.Invertible1x1Conv()), (BATCH, 4, 4, 4),
                    pert=0.3), 3),
    Case("squeeze", fb.Squeeze, _from_init(fb.Squeeze(), IMG), 3),
    Case("reverse", fb.Reverse, _from_init(fb.Reverse(), VEC), 1),
    Case("reverse_image", fb.Reverse, _from_init(fb.Reverse(event_ndims=3), IMG3), 3),
    Case("permute", fb.Permute, _from_init(fb.Permute((3, 0, 4, 1, 2)), VEC), 1),
    Case("coupling_stripe_mixture", fb.Coupling,
         _from_init(_coupling(fb.StripeSplit(), fb.MixtureCDFInner(num_components=3), 2 * 11),
                    IMG), 3),
    Case("coupling_checkerboard_affine_swap", fb.Coupling,
         _from_init(_coupling(fb.CheckerboardSplit(), fb.AffineInner(), 2 * 2, swap=True),
                    IMG), 3),
    Case("coupling_channels_affine_glow", fb.Coupling,
         _from_init(_coupling(fb.ChannelSplit(), fb.AffineInner("glow_sigmoid"), 2 * 2),
                    (BATCH, 4, 4, 4)), 3),
    Case("coupling_conditioner_fn_context", fb.Coupling,
         _from_init(fb.Coupling(split=fb.ChannelSplit(), event_ndims=3,
                                conditioner=_ConvConditioner(2 * 2), inner=fb.AffineInner()),
                    (BATCH, 4, 4, 4),
                    context_fn=lambda k, d: {"context": _normal(k, (BATCH, 3), d)}), 3),
    Case("coupling_pure_function_conditioner", fb.Coupling,
         _from_init(_vector_context_coupling, VEC), 1),
    Case("masked_autoregressive_affine", fb.MaskedAutoregressiveAffine,
         _from_init(_maf(), VEC, pert=0.1), 1),
    Case("masked_autoregressive_shift_only_reversed_context", fb.MaskedAutoregressiveAffine,
         _from_init(_maf(shift_only=True, reverse=True), VEC, pert=0.1,
                    context_fn=lambda k, d: {"context": _normal(k, (BATCH, 3), d)}), 1),
    Case("masked_autoregressive_image_reversed", fb.MaskedAutoregressiveAffine,
         _from_init(_maf(event_ndims=3, reverse=True), IMG, pert=0.1), 3),
    Case("swap_halves_stripes", fb.SwapHalves, _from_init(fb.SwapHalves(fb.StripeSplit()), IMG), 3),
    Case("swap_halves_vector_channels", fb.SwapHalves,
         _from_init(fb.SwapHalves(fb.ChannelSplit(), event_ndims=1), (BATCH, 6)), 1),
    Case("scan_chain_flow_steps", fb.ScanChain,
         _from_init(fb.ScanChain(_scan_step, 2), IMG, pert=0.05), 3),
    Case("scan_chain_unrolled_context", fb.ScanChain,
         _from_init(fb.ScanChain(fb.Chain([fb.Affine(event_ndims=1), _vector_context_coupling]),
                                 2, unroll=True), VEC, pert=0.1), 1),
    Case("scan_chain_alternating_autoregressive", fb.ScanChain,
         _from_init(fb.ScanChain(fb.Chain([_maf(), _maf(reverse=True)]), 2), VEC, pert=0.1), 1),
    Case("chain_image_flow", fb.Chain, _from_init(_image_chain, IMG, pert=0.05), 3),
    Case("invert_actnorm", fb.Invert,
         _from_init(fb.Invert(fb.ActNorm(per="channel")), IMG, pert=0.2), 3),
    Case("invert_chain", fb.Invert,
         _from_init(fb.Invert(fb.Chain([fb.Sigmoid(event_ndims=1), fb.Logit(event_ndims=1),
                                        _vector_context_coupling])), VEC), 1),
]
