"""Flow++ architectures as config.model settings: the official CIFAR-10 model (also the
defaults of keys a config leaves unset) and the official ImageNet and CelebA models as
overrides of it (read from the authors' launchers; experiments/configs/flowpp_*.py say what
each reproduces)."""

# The official CIFAR-10 Flow++ model; also the defaults of config.model keys left unset.
OFFICIAL_MODEL = dict(
    filters=96, blocks=10, num_components=32, coupling="mixture",
    mixer="attention",  # or "gated_nin" (the no-attention ablation), "none"
    num_heads=4, dropout=0.2,
    # Main-flow groups (flows.py): the latent is 16x16x12 on CIFAR-10.
    layout="stripe:4,squeeze,channel:2,stripe:3",
    pointwise=True,  # a 1x1 conv per half in every step (not in the ImageNet models)
    swap_back_odd=True,  # flowzoo's choice after odd groups; the official code: False
    weight_norm=False,  # conditioner convolutions (the official ImageNet 32x32 model: True)
    elu_before_output=False,  # concat_elu before each conditioner's last conv (ImageNet)
    alpha=0.05,
    dequantization="variational", dequant_filters=96, dequant_blocks=2, dequant_steps=4,
    dequant_mixer=None,  # None: the main flow's mixer
    dequant_context_filters=32, dequant_context_blocks=3,
    dequant_context_norm=False, dequant_context_attention=False,  # True in ImageNet models
    # The conditioner networks' arithmetic: "float32"; "bfloat16" (bfloat16 activations,
    # float32 parameters, accumulation, bijectors and loss); or "bfloat16_products"
    # (float32 activations, the convolutions' operands in bfloat16: the faster one on a CPU
    # with bfloat16 matrix units).  flowzoo/models/precision.py.  It changes the computed
    # function, so a resumed run keeps it.
    compute_dtype="float32",
    iw_samples=16,  # the paper: PAPER_IW_SAMPLES, in a final --mode=eval
    iw_chunk=1,  # samples per lax.map step: memory of one eval batch
    sample_temperature=1.0,
    # What the optimizer differentiates: "nats", the official loss (mean negative
    # log-likelihood per example, in nats: clipping at 1.0 and Adam's epsilon on that
    # scale), or "bits_per_dim".  The logged loss is bits/dim either way.
    loss_scale="nats",
    # An official TF checkpoint prefix to start from instead of a data-dependent init
    # (official.py), and whether to take its EMA shadows (what the official evaluation uses).
    init_from_official=None, official_ema=True,
    # Execution only (same function, same parameter count): conditioner blocks under
    # nn.scan (compile once, not `blocks` times) and rematerialised in the backward pass;
    # the steps of each flow group under lax.scan (False: unrolled, the same parameters);
    # attention one example at a time on CPU ("auto"; "examples", "off": attention.py).
    scan_blocks=True, remat=True, scan_steps=True, attention_loop="auto")


# The official ImageNet models (flows_imagenet/launchers/*_official.py), as overrides of
# OFFICIAL_MODEL; experiments/configs/flowpp_imagenet*.py say what each key reproduces.
IMAGENET32_MODEL = dict(
    filters=128, blocks=20, num_components=32, mixer="attention", num_heads=4, dropout=0.0,
    layout="stripe:4,stripe:3,squeeze,channel:3,stripe:3", pointwise=False,
    swap_back_odd=False, weight_norm=True, elu_before_output=True,
    dequant_filters=128, dequant_blocks=8, dequant_steps=8, dequant_context_filters=32,
    dequant_context_blocks=8, dequant_context_norm=True, dequant_context_attention=True)
IMAGENET64_MODEL = dict(
    filters=96, blocks=16, num_components=4, mixer="attention", num_heads=4, dropout=0.0,
    layout="squeeze,stripe:4,squeeze,channel:2,stripe:2,squeeze,channel:2,stripe:2",
    pointwise=False, swap_back_odd=False, weight_norm=False, elu_before_output=True,
    dequant_filters=96, dequant_blocks=5, dequant_steps=4, dequant_mixer="none",
    dequant_context_filters=32, dequant_context_blocks=5, dequant_context_norm=True,
    dequant_context_attention=False)

# flows_celeba/launchers/celeba128_5bit_official.py: the ImageNet 64x64 model with one more
# squeeze in front (128x128x3 -> 32x32x48 before the first steps) and 12 blocks.
CELEBA128_MODEL = dict(IMAGENET64_MODEL, blocks=12, layout="squeeze," + IMAGENET64_MODEL["layout"])
