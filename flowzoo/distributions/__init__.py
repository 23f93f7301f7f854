"""Distributions: pure ``init`` / ``log_prob`` / ``sample`` on explicit params.

See :mod:`flowzoo.distributions.base` for the contract.
"""

from flowzoo.distributions.base import Distribution
from flowzoo.distributions.bernoulli import Bernoulli
from flowzoo.distributions.discretized_logistic_mixture import DiscretizedLogisticMixture
from flowzoo.distributions.logistic import Logistic
from flowzoo.distributions.mixture_logistic import MixtureOfLogistics
from flowzoo.distributions.normal import Normal, StandardNormal
from flowzoo.distributions.transformed import TransformedDistribution

__all__ = [
    "Bernoulli",
    "DiscretizedLogisticMixture",
    "Distribution",
    "Logistic",
    "MixtureOfLogistics",
    "Normal",
    "StandardNormal",
    "TransformedDistribution",
]
