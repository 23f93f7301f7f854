"""Official Flow++ checkpoints (the authors' TensorFlow code) -> flowzoo parameters.

    flow = flowpp.make_flow(config.model, (32, 32, 3), 256)
    params = flowpp.official_params(flow, "/path/model-123456", ema=True)
    z = flowpp.encode(flow, params, images)

or, through the launcher, ``--config.model.init_from_official=/path/model-123456`` (the
checkpoint prefix, without ``.index``) with ``config.model.official_ema`` (default True: the
``.../ExponentialMovingAverage`` shadows, which the official evaluation and sampling use).

The official CIFAR-10 family (``flows/run_cifar.py`` and ``flows/ablations/*.py``) is
supported: every flowzoo parameter comes from exactly one official variable (or a stack of
them), every official model variable is used once, and a missing or unexpected variable is an
error naming it.  Optimizer slots (``.../Adam``, ``.../Adam_1``, ``beta1_power``,
``beta2_power``) and the copy not asked for (raw weights or EMA shadows) are recognised and
skipped.  The ImageNet and CelebA launchers (flowzoo builds their architectures exactly:
``experiments/configs/flowpp_imagenet*.py``, ``flowpp_celeba*.py``) name their variables
differently and are not converted; such a config is refused with a message.

Layout differences, all handled here rather than in the model's math:

* scopes: ``tf.make_template`` numbers ``Norm``, ``Pointwise`` and the coupling in first-call
  order, dequantizer first (``Norm`` ... ``Norm_3``), then the main flow; flowzoo stacks the
  steps of each group (``ScanChain``) and the conditioner blocks (``nn.scan``) on axis 0;
* ``Pointwise/W{i}`` multiplies from the right (``x @ W``); flowzoo's kernel from the left
  (``kernel @ x``): the kernel is ``W.T``;
* dense (NIN) weights ``[in, out]`` are flowzoo 1x1 kernels ``[1, 1, in, out]``; LayerNorm
  ``g``/``b`` of shape ``[1, 1, 1, F]`` are ``(F,)``;
* tuple halves: official ``norm{i}``/``W{i}`` act on element i of the (x1, x2) tuple, which
  is flowzoo's ``PerHalf`` entry i (flowzoo swaps the halves of the merged image where the
  official code flips the tuple, so the two agree step by step);
* the final tuple flip: after a group with an odd number of steps the official code merges
  the flipped tuple, flowzoo swaps the halves back.  Only the main flow's last group may be
  odd (elsewhere the two functions would differ), and then the official latent is flowzoo's
  with its halves swapped: :func:`latents_to_official` / :func:`latents_from_official`;
* data-dependent init: the official checkpoint stores the rescaled weights ``W = V * s`` and
  biases, and the raw ``Norm`` scales (floored at 1e-10 when used, in both codes): taken as
  they are.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from flowzoo import bijectors as fb
from flowzoo.models.flowpp import tf_checkpoint

EMA_SUFFIX = "/ExponentialMovingAverage"
OPTIMIZER_SUFFIXES = ("/Adam", "/Adam_1")
OPTIMIZER_GLOBALS = ("beta1_power", "beta2_power")
OFFICIAL_HEADS = 4  # MixLogisticAttnCoupling's default; no CIFAR launcher changes it


read_official_checkpoint = tf_checkpoint.load_checkpoint
read_variable_shapes = tf_checkpoint.variable_shapes


def _same(a):
    return a


def _transposed(a):  # Pointwise: x @ W == kernel @ x with kernel = W.T
    return a.T


def _dense_as_1x1(a):  # [in, out] -> [1, 1, in, out]
    return a.reshape((1, 1) + tuple(a.shape))


def _flat(a):  # LayerNorm [1, 1, 1, F] -> (F,)
    return a.reshape(a.shape[-1:])


@dataclasses.dataclass(frozen=True)
class Take:
    """One official variable, with the layout fix that makes it a flowzoo parameter."""

    name: str
    fix: Callable[[Any], Any] = _same


@dataclasses.dataclass(frozen=True)
class Stack:
    """Recipes stacked on a new leading axis (the steps of a ScanChain, scanned blocks)."""

    items: tuple


def _is_recipe(x):
    return isinstance(x, (Take, Stack))


def _stack(trees):
    return jax.tree.map(lambda *items: Stack(items), *trees, is_leaf=_is_recipe)


def _conv(scope, fix=_same):
    return {"kernel": Take(f"{scope}/W", fix), "bias": Take(f"{scope}/b")}


def _layer_norm(scope):
    return {"scale": Take(f"{scope}/g", _flat), "bias": Take(f"{scope}/b", _flat)}


_SCOPES = {("mixture", "attention"): "MixLogisticAttnCoupling",
           ("mixture", "gated_nin"): "MixLogisticCoupling",  # flows/ablations/abl_noattn.py
           ("affine", "attention"): "AffineAttnCoupling"}  # flows/ablations/abl_nomixlog.py


def coupling_scope(cfg) -> str:
    """The official class (= variable scope) of a coupling with this config."""
    key = (cfg.coupling, cfg.mixer)
    if key not in _SCOPES:
        raise ValueError(f"No official CIFAR-10 Flow++ model has {cfg.coupling} couplings "
                         f"with mixer {cfg.mixer!r}; convertible: {sorted(_SCOPES)}.")
    return _SCOPES[key]


def _block(scope, cfg, has_context):
    conv = {"conv_in": _conv(f"{scope}/conv/c1"),
            "conv_out": _conv(f"{scope}/conv/c2", _dense_as_1x1)}
    if has_context:
        conv["context_proj"] = _conv(f"{scope}/conv/a_proj", _dense_as_1x1)
    attention = cfg.mixer == "attention"
    first = "qkv" if attention else "proj"  # official scope 'attn' for gated_nin too
    mix = {first: _conv(f"{scope}/attn/proj1", _dense_as_1x1),
           "gate": _conv(f"{scope}/attn/proj2", _dense_as_1x1)}
    return {"conv": conv, "norm_conv": _layer_norm(f"{scope}/ln1"),
            "attn" if attention else "nin": mix, "norm_attn": _layer_norm(f"{scope}/ln2")}


def _coupling(scope, cfg, num_blocks, has_context):
    params = {"pos_emb": Take(f"{scope}/pos_emb"), "proj_in": _conv(f"{scope}/proj_in"),
              "proj_out": _conv(f"{scope}/proj_out")}
    blocks = [_block(f"{scope}/block{b}", cfg, has_context) for b in range(num_blocks)]
    if cfg.scan_blocks:
        params["blocks"] = _stack(blocks)
    else:
        params.update({f"block_{b}": block for b, block in enumerate(blocks)})
    return {"params": params}


def _numbered(base, k):
    return base if k == 0 else f"{base}_{k}"


def _step(k, cfg, num_blocks, has_context):
    """Step k (in official call order): (ActNorm per half, 1x1 conv per half, coupling, swap)."""
    norm, pointwise = _numbered("Norm", k), _numbered("Pointwise", k)
    return (tuple({"scale": Take(f"{norm}/norm{h}/g"), "shift": Take(f"{norm}/norm{h}/b")}
                  for h in (0, 1)),
            tuple({"kernel": Take(f"{pointwise}/W{h}", _transposed)} for h in (0, 1)),
            _coupling(_numbered(coupling_scope(cfg), k), cfg, num_blocks, has_context),
            ())


def _chain(chain, first_step, cfg, num_blocks, has_context, where, odd_last_ok):
    """Recipes of a flowzoo Chain of ScanChain groups and parameter-free bijectors."""
    out, k = [], first_step
    layers = chain.bijectors
    groups = [b for b in layers if isinstance(b, fb.ScanChain)]
    for i, b in enumerate(layers):
        if not isinstance(b, fb.ScanChain):
            out.append(())
            continue
        swapped_back = i + 1 < len(layers) and isinstance(layers[i + 1], fb.SwapHalves)
        if swapped_back and not (odd_last_ok and b is groups[-1]):
            raise ValueError(f"{where}: a group of {b.num_steps} steps before the last one, "
                             f"whose halves flowzoo swaps back while the official code merges "
                             f"them flipped: the two compute different functions.  Set "
                             f"config.model.swap_back_odd=False for the official behaviour.")
        out.append(_stack([_step(k + i, cfg, num_blocks, has_context)
                           for i in range(b.num_steps)]))
        k += b.num_steps
    return tuple(out), k


def _check_convertible(flow):
    cfg = flow.cfg
    coupling_scope(cfg)
    problems = []
    imagenet = dict(pointwise=True, weight_norm=False, elu_before_output=False,
                    dequant_context_norm=False, dequant_context_attention=False)
    problems += [f"{key}={getattr(cfg, key)}" for key, value in imagenet.items()
                 if getattr(cfg, key) != value]
    if cfg.dequant_mixer not in (None, cfg.mixer):
        problems.append(f"dequant_mixer={cfg.dequant_mixer!r}")
    if problems:
        raise ValueError("Only the official CIFAR-10 family (flows/run_cifar.py, "
                         "flows/ablations) is converted; this config has " +
                         ", ".join(problems) + " (the ImageNet/CelebA launchers' "
                         "architecture, whose checkpoints use other variable names).")
    if cfg.num_heads != OFFICIAL_HEADS and cfg.mixer == "attention":
        problems.append(f"num_heads={cfg.num_heads} (official: {OFFICIAL_HEADS})")
    if cfg.alpha != 0.05:
        problems.append(f"alpha={cfg.alpha} (official ImgProc: 0.05)")
    if flow.num_levels != 256:
        problems.append(f"{flow.num_levels} levels (the official code scales by 256)")
    if problems:
        raise ValueError("This config has no official counterpart: " + "; ".join(problems) +
                         ".  Use the official settings to convert an official checkpoint.")


def official_layout(flow):
    """flowzoo's parameter pytree with :class:`Take`/:class:`Stack` recipes as leaves."""
    _check_convertible(flow)
    cfg = flow.cfg
    layout, k = {}, 0
    if flow.dequantizer is not None:
        context = {"proj_in": _conv("context_proc/proj")}
        for i in range(cfg.dequant_context_blocks):
            context[f"conv_{i}"] = {"conv_in": _conv(f"context_proc/c{i}/c1"),
                                    "conv_out": _conv(f"context_proc/c{i}/c2")}
        noise, k = _chain(flow.dequantizer.noise_flow, k, cfg, cfg.dequant_blocks, True,
                          "the dequantizer", odd_last_ok=False)
        layout["dequant"] = {"context": {"params": context}, "noise": noise}
    layout["main"], _ = _chain(flow.main, k, cfg, cfg.blocks, False, "the main flow",
                               odd_last_ok=True)
    return layout


def _takes(recipe):
    if isinstance(recipe, Take):
        yield recipe
    else:
        for item in recipe.items:
            yield from _takes(item)


def official_variable_names(flow):
    """The official model variables (no EMA/optimizer suffixes) this flow is made of."""
    leaves = jax.tree.leaves(official_layout(flow), is_leaf=_is_recipe)
    return [t.name for leaf in leaves for t in _takes(leaf)]


def _build(recipe, get, stack):
    if isinstance(recipe, Take):
        return recipe.fix(get(recipe.name))
    items = [_build(r, get, stack) for r in recipe.items]
    shapes = [tuple(a.shape) for a in items]
    if len(set(shapes)) > 1:
        names = [t.name for t in _takes(recipe)]
        raise ValueError(f"Official variables {names} have shapes {shapes}; they should "
                         f"share one shape (one stacked flowzoo parameter).")
    return stack(items)


def _listing(names, limit=12):
    names = sorted(names)
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _stored_names(base_names, available, ema):
    """base name -> the checkpoint key to read; raises naming missing/unexpected ones."""
    wanted = {n: n + EMA_SUFFIX if ema else n for n in base_names}
    missing = [key for key in wanted.values() if key not in available]
    if missing:
        hint = ""
        if ema and all(n in available for n in base_names):
            hint = (" It holds the raw weights but no EMA shadows: convert with ema=False "
                    "(config.model.official_ema=False).")
        raise KeyError(f"The official checkpoint lacks {len(missing)} variable(s) this config "
                       f"needs: {_listing(missing)}.{hint}  Check that the config matches the "
                       f"one the checkpoint was trained with (filters, blocks, components, "
                       f"steps, dequantization, attention, coupling).")
    known = set(OPTIMIZER_GLOBALS)
    for n in base_names:
        known.update([n, n + EMA_SUFFIX] + [n + s for s in OPTIMIZER_SUFFIXES])
    unexpected = [key for key in available if key not in known]
    if unexpected:
        raise KeyError(f"The official checkpoint has {len(unexpected)} variable(s) this "
                       f"config does not use: {_listing(unexpected)}.  It was written for "
                       f"another configuration (check filters, blocks, components, steps, "
                       f"dequantization, attention, coupling).")
    return wanted


def _paths_and_shapes(tree):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): tuple(a.shape) for p, a in flat}


def _check_shapes(layout, shapes_by_key, wanted, template):
    """Raises naming every flowzoo parameter whose official source has the wrong shape."""
    abstract = {key: jax.ShapeDtypeStruct(shape, jnp.float32)
                for key, shape in shapes_by_key.items()}
    built = jax.eval_shape(lambda arrays: jax.tree.map(
        lambda r: _build(r, lambda n: arrays[wanted[n]], jnp.stack), layout,
        is_leaf=_is_recipe), {k: abstract[k] for k in wanted.values()})
    got, expected = _paths_and_shapes(built), _paths_and_shapes(template)
    if set(got) != set(expected):
        raise ValueError(f"Converter layout and flowzoo parameters differ: missing "
                         f"{sorted(set(expected) - set(got))}, extra "
                         f"{sorted(set(got) - set(expected))} (a converter bug).")
    sources = {jax.tree_util.keystr(p): [t.name for t in _takes(r)]
               for p, r in jax.tree_util.tree_flatten_with_path(layout, is_leaf=_is_recipe)[0]}
    bad = [f"{path} {expected[path]} <- {sources[path][:2]} {got[path]}"
           for path in sorted(got) if got[path] != expected[path]]
    if bad:
        raise ValueError("Official variables do not fit this config's parameters "
                         "(flowzoo path, expected shape <- official variables, their shape "
                         "after conversion): " + "; ".join(bad[:8]))


class ConversionPlan:
    """What to read and how, checked against the checkpoint's names and shapes (so a
    checkpoint can be checked from its index alone): ``shapes_by_key`` maps every stored
    variable to its shape; ``template`` is the flow's abstract params
    (``model.template_params(flow)``)."""

    def __init__(self, flow, shapes_by_key, ema, template):
        self.layout = official_layout(flow)
        base = official_variable_names(flow)
        self.wanted = _stored_names(base, shapes_by_key, ema)
        self.template = template
        _check_shapes(self.layout, shapes_by_key, self.wanted, self.template)

    def build(self, arrays: Mapping[str, Any]):
        def get(name):
            return np.asarray(arrays[self.wanted[name]], np.float32)

        built = jax.tree.map(lambda r: _build(r, get, np.stack), self.layout,
                             is_leaf=_is_recipe)
        by_path = {jax.tree_util.keystr(p): a
                   for p, a in jax.tree_util.tree_flatten_with_path(built)[0]}
        flat, treedef = jax.tree_util.tree_flatten_with_path(self.template)
        return jax.tree_util.tree_unflatten(
            treedef, [by_path[jax.tree_util.keystr(p)] for p, _ in flat])


def official_params(flow, source, *, ema=False, template):
    """flowzoo params (NumPy float32, the pytree of ``flowpp`` init) from an official
    checkpoint.  ``source``: a checkpoint prefix (the path without ``.index``) or a mapping
    name -> array (e.g. from ``tf.train.load_checkpoint`` or an ``.npz``).  ``ema``: take the
    ``.../ExponentialMovingAverage`` shadows (what the official evaluation uses).
    ``template``: the flow's abstract params; ``flowpp.official_params`` fills it in."""
    if isinstance(source, Mapping):
        shapes = {k: tuple(np.shape(v)) for k, v in source.items()}
        return ConversionPlan(flow, shapes, ema, template).build(source)
    plan = ConversionPlan(flow, tf_checkpoint.variable_shapes(str(source)), ema, template)
    return plan.build(tf_checkpoint.load_checkpoint(str(source), list(plan.wanted.values())))


def params_in_program(flow, prefix, ema, template):
    """:func:`official_params` as a value inside a traced program (the model's ``init``):
    names and shapes are checked now, from the index; the data is read when the program
    runs (a host callback), so no weights become compile-time constants."""
    plan = ConversionPlan(flow, tf_checkpoint.variable_shapes(str(prefix)), ema, template)

    def read():
        return plan.build(tf_checkpoint.load_checkpoint(str(prefix),
                                                        list(plan.wanted.values())))

    return jax.pure_callback(read, template)


def _latent_swap(flow):
    last = flow.main.bijectors[-1]
    return last if isinstance(last, fb.SwapHalves) else None


def latents_to_official(flow, z):
    """flowzoo latents -> the official code's latent layout (they differ by the halves swap
    after an odd last group; the prior N(0, I) does not see it)."""
    swap = _latent_swap(flow)
    return z if swap is None else swap.forward((), z)[0]


def latents_from_official(flow, z):
    """The inverse of :func:`latents_to_official` (the swap is its own inverse)."""
    return latents_to_official(flow, z)
