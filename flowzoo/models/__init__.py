"""Model registry: ``build(config.model, image_shape, num_levels) -> training.Model``."""

from __future__ import annotations

import difflib

from flowzoo.models import flowpp, small_flow

_BUILDERS = {"small_flow": small_flow.build}
_BUILDERS["flowpp"] = flowpp.build
_BUILDERS["vlae"] = __import__("flowzoo.models.vlae.model", fromlist=["build"]).build


def build(model_config, image_shape, num_levels):
    name = model_config.get("name")
    if name not in _BUILDERS:
        near = difflib.get_close_matches(str(name), list(_BUILDERS), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise ValueError(f"Unknown config.model.name {name!r}.{hint} Known models: "
                         f"{sorted(_BUILDERS)}")
    return _BUILDERS[name](model_config, tuple(image_shape), int(num_levels))
