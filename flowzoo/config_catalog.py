"""The experiment configs the launcher offers: their names, one-line descriptions and presets
(for ``--help``), and the nearest valid key for a mistyped ``--config.a.b=`` override.

Configs live in ``experiments/configs/`` of a checkout.  Each file's docstring starts with a
one-paragraph description; its presets (``file.py:preset``) are the keys of a module-level
``PRESETS``: a literal ``{"smoke": "what it is", ...}`` (read without importing the file) or
a mapping to the functions that apply them (the file is imported; each function's docstring
describes it).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import pathlib
import textwrap


def folder() -> pathlib.Path:
    """``experiments/configs`` of the checkout this package runs from, else of the cwd."""
    beside_package = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
    return beside_package if beside_package.is_dir() else pathlib.Path("experiments/configs")


def _files() -> list[pathlib.Path]:
    return sorted(p for p in folder().glob("*.py") if not p.name.startswith("_"))


def names() -> list[str]:
    return [p.name for p in _files()]


def describe(path: pathlib.Path) -> tuple[str, dict[str, str]]:
    """(first docstring paragraph, {preset: one-line description}) of one config file."""
    tree = ast.parse(path.read_text())
    doc = (ast.get_docstring(tree) or "").strip().split("\n\n")[0].split()
    presets = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "PRESETS"):
            try:
                presets = ast.literal_eval(node.value)
            except ValueError:  # a mapping to preset functions: import the file
                presets = {name: (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
                           for name, fn in _module(path).PRESETS.items()}
    return " ".join(doc), presets


def help_text(flags_help: str) -> str:
    lines = ["usage: flowzoo {train,eval,sample,describe} --config CONFIG[:PRESET] "
             "--workdir DIR [--config.KEY=VALUE ...]",
             "   or: python experiments/main.py --config ... --workdir ... [--mode=MODE]",
             "", f"Configs ({folder()}; a preset follows a colon, e.g. digits_flow.py:smoke):"]
    for path in _files():
        summary, presets = describe(path)
        lines.append(f"  {path.name}")
        lines += textwrap.wrap(summary, 96, initial_indent="      ", subsequent_indent="      ")
        for preset, what in presets.items():
            lines += textwrap.wrap(f":{preset}  {what}", 96, initial_indent="      ",
                                   subsequent_indent="          ")
    return "\n".join(lines + ["", "Flags:", flags_help])


def _module(path):
    spec = importlib.util.spec_from_file_location(f"_flowzoo_config_{pathlib.Path(path).stem}",
                                                  os.path.expanduser(str(path)))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(config_arg: str):
    path, _, arg = config_arg.partition(":")
    return _module(path).get_config(arg or None)


def unknown_override(flag: str, config_arg: str, near: str | None = None) -> str:
    """The message for ``--config.a.b=`` naming a key the config lacks: the nearest key."""
    dotted = flag.removeprefix("config.")
    parts = dotted.split(".")
    try:
        node = _load(config_arg)
        for part in parts[:-1]:
            node = node[part]
        keys = list(node.keys())
    except Exception:  # noqa: BLE001 - the hint is a courtesy; the error stands without it
        keys = []
    match = difflib.get_close_matches(parts[-1], keys, n=1) or ([near] if near else [])
    prefix = ".".join(parts[:-1])
    hint = f"; did you mean --config.{prefix + '.' if prefix else ''}{match[0]}?" if match else "."
    where = f"under config.{prefix}" if prefix else "at the top level"
    valid = f"\nValid keys {where}: {', '.join(sorted(keys))}" if keys else ""
    return f"unknown config key --config.{dotted}{hint}{valid}"
