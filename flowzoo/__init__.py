"""flowzoo: a JAX/Flax functional model zoo for Flow++ and VLAE.

Subpackages: ``bijectors`` and ``distributions`` (pure-function building blocks),
``data`` (datasets and resumable batches), ``training`` (the one trainer),
``models`` (models registered by ``config.model.name``).
"""

__version__ = "0.1.0"
