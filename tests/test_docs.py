"""The README's example and the notebook run, so neither can rot."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_test_command_is_what_ci_runs():
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\n```bash\n(.+?)\n```\n<!-- /test-command -->", text)
    assert match, "README.md must hold the test command between test-command markers"
    assert "pytest" in match.group(1)
    assert "test-command" in (ROOT / ".ci" / "run").read_text()


def test_notebook_executes():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = ROOT / "experiments" / "notebooks" / "pure_functions.ipynb"
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot was drawn"
