"""The teaching path (``examples/notebooks/``) runs: every notebook is executed top to bottom by
nbclient at its small budget (``PPL_NOTEBOOK_SMOKE=1``: fewer images, steps and samples; the same
code), so a change to the project that breaks a lesson fails here. The notebooks are committed
without outputs: a reader runs them and sees their own figures, and a diff shows only the lesson."""
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "examples" / "notebooks").glob("*.ipynb"))
LESSONS = ["1_elbo_linear_gaussian", "2_vae_guides", "3_enumeration_m2", "4_vrnn_markov", "5_tighter_bounds",
           "6_the_prior"]


def code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_the_teaching_path_holds_its_lessons_in_order():
    assert [p.stem for p in NOTEBOOKS] == LESSONS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_lesson_is_committed_clean_and_uses_the_projects_own_code(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert all(c.outputs == [] and c.execution_count is None for c in code(nb)), "commit notebooks without outputs"
    source = "\n".join(c.source for c in code(nb))
    assert re.search(r"^from (ppl_models|guides)\b", source, re.M), "a lesson imports the project's modules"
    assert not re.search(r"^class \w+\((nn\.)?Module\)", source, re.M), "no copies of the models in a lesson"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## Exercises" in text and re.search(r"figures/model_\w+\.png", text), "exercises and a plate diagram"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_lesson_runs_top_to_bottom(path, monkeypatch):
    monkeypatch.setenv("PPL_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in code(nb) for o in c.outputs if o.output_type == "error"]
    assert not errors
