"""Execute notebooks/quickstart.ipynb in a real Jupyter kernel and check what it printed and drew."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"
MODELS = ("pop", "lightgcn", "vbpr", "gat")
KERNEL = "python3"


@pytest.fixture
def this_python_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` kernelspec that runs this interpreter, found first on JUPYTER_PATH.

    Without it, jupyter_client may start another ``python3`` kernel installed on the machine
    (a system Python without graphrec).
    """
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "graphrec test kernel", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def stream_text(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output["output_type"] == "stream")


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells)


@pytest.mark.slow  # a real Jupyter kernel encodes four modalities and trains four models: about a minute on two cores
def test_quickstart_notebook_runs(tmp_path: Path, this_python_kernel: str):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # One extra cell records which interpreter the kernel ran.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print('kernel python:', sys.executable)"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    NotebookClient(notebook, timeout=600, kernel_name=this_python_kernel,
                   resources={"metadata": {"path": str(workdir)}}).execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    errors = [output for output in outputs if output["output_type"] == "error"]
    assert not errors, "\n".join(f"{e['ename']}: {e['evalue']}" for e in errors)
    assert f"kernel python: {sys.executable}" in stream_text(notebook.cells[-1])

    text = "".join(stream_text(cell) for cell in notebook.cells if cell.cell_type == "code")
    assert "dataset 'synthetic'" in text and "cold items" in text
    assert "HeteroData" in text and "density of the training user-item graph" in text

    # The metrics table: one row per model, with four metrics in [0, 1].
    metric_rows = {}
    for model in MODELS:
        match = re.search(rf"^{model}\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s*$", text, re.MULTILINE)
        assert match, f"no metrics row for {model} in:\n{text[-3000:]}"
        metric_rows[model] = [float(value) for value in match.groups()[1:]]
        assert all(0.0 <= value <= 1.0 for value in metric_rows[model])
    assert "test recall@20" in text and "cold recall@10" in text
    # A trained graph model beats popularity on warm items even with this small epoch budget.
    assert max(metric_rows["lightgcn"][0], metric_rows["gat"][0]) > metric_rows["pop"][0]

    assert re.search(r"^\s+1\. .+ score .+attention: .*text \d\.\d\d", text, re.MULTILINE)
    assert "because you liked: " in text and "new user picked:" in text
    # one audio and one video item, with the attention the GAT gives their clip and video
    assert re.search(r"^dominant frequency \d+ Hz$", text, re.MULTILINE)
    assert re.search(r"^  audio audio/item_\d+\.wav \(sound '[^']+'\): attention \d\.\d\d$", text, re.MULTILINE)
    assert re.search(r"^  video video/item_\d+\.mp4 \(motion '[^']+'\): attention \d\.\d\d$", text, re.MULTILINE)

    images = [output for output in outputs
              if output["output_type"] == "display_data" and "image/png" in output.get("data", {})]
    # item pictures, a clip, a video's frames, ego-graph, three training curves, model comparison
    assert len(images) >= 8
    assert all((workdir / "quickstart-output" / model / "metrics.json").is_file() for model in MODELS)
    assert all((workdir / "quickstart-output" / model / "curves.png").is_file() for model in ("lightgcn", "vbpr",
                                                                                               "gat"))
