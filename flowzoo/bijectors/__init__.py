"""Pure-function bijectors; the contract is documented in :mod:`flowzoo.bijectors.base`."""

from flowzoo.bijectors.actnorm import ActNorm
from flowzoo.bijectors.affine import Affine, AffineInner
from flowzoo.bijectors.base import Bijector
from flowzoo.bijectors.chain import Chain, Invert
from flowzoo.bijectors.conv1x1 import Invertible1x1Conv, LUInvertible1x1Conv
from flowzoo.bijectors.coupling import Conditioner, Coupling
from flowzoo.bijectors.image_to_logit import ImageToLogit
from flowzoo.bijectors.masked_autoregressive import MaskedAutoregressiveAffine
from flowzoo.bijectors.mixture_cdf import LogisticMixtureCDF, MixtureCDFInner
from flowzoo.bijectors.per_half import PerHalf
from flowzoo.bijectors.permute import Permute, Reverse
from flowzoo.bijectors.scan_chain import ScanChain
from flowzoo.bijectors.sigmoid import Logit, Sigmoid
from flowzoo.bijectors.splits import ChannelSplit, CheckerboardSplit, StripeSplit
from flowzoo.bijectors.squeeze import Squeeze
from flowzoo.bijectors.swap_halves import SwapHalves

__all__ = [
    "ActNorm", "Affine", "AffineInner", "Bijector", "Chain", "ChannelSplit",
    "CheckerboardSplit", "Conditioner", "Coupling", "ImageToLogit", "Invert",
    "Invertible1x1Conv", "LUInvertible1x1Conv", "Logit", "LogisticMixtureCDF",
    "MaskedAutoregressiveAffine", "MixtureCDFInner", "PerHalf", "Permute", "Reverse",
    "ScanChain", "Sigmoid", "Squeeze", "StripeSplit", "SwapHalves",
]
