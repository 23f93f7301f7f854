"""Config assembly for the shipped experiments: ``common.assemble``, the Flow++ and VLAE
recipes and presets (``flowpp``, ``vlae``).  Above models and training; below the launcher."""
