"""The models, each built from the core: ``small_flow``, ``flowpp`` (Flow++), ``vlae`` (VLAE).

Each model package has ``build(config.model, image_shape, num_levels) -> flowzoo.model.Model``.
The registry that maps ``config.model.name`` to a builder is the launcher's
(``flowzoo.experiment.MODELS``): models and the trainer do not know each other.
"""
