"""The architecture as a test: the stories and their guides import torch, Pyro and the story parts only.

A story (``ppl_models/<story>.py``) or a guide (``guides/*.py``) that imported the runner, the data
fetchers, the inference loop or the judge would tie the readable program to the machinery around it;
these tests read every import statement of those files and fail when one reaches outside."""
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("data", "inference", "runs", "judge")  # the role folders: never imported by a story or a guide
THIRD_PARTY = ("torch", "pyro")                 # the only libraries a story or a guide builds on


def stories_and_guides():
    top = sorted(p for p in (ROOT / "ppl_models").glob("*.py") if p.name != "__init__.py")
    return top + sorted((ROOT / "guides").glob("*.py"))


def imported(path):
    """Every module name an ``import`` or ``from ... import`` in ``path`` names, wherever it stands."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names.append(base)
            if base == "ppl_models":  # from ppl_models import data: the module is ppl_models.data
                names += [f"ppl_models.{a.name}" for a in node.names]
    return names


def outside(name):
    """Why the import ``name`` is not allowed in a story or a guide, or ``None``."""
    top = name.split(".")[0]
    if top == "ppl_models":
        parts = name.split(".")
        if len(parts) > 1 and parts[1] in ROLES:
            return f"a role folder (ppl_models.{parts[1]})"
        return None
    if top in ("guides", *THIRD_PARTY) or top in sys.stdlib_module_names:
        return None
    return "a library other than torch and Pyro"


@pytest.mark.parametrize("path", stories_and_guides(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stories_and_guides_import_torch_pyro_and_story_parts_only(path):
    bad = [f"{name}: {outside(name)}" for name in imported(path) if outside(name)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_boundary_check_catches_a_story_that_imports_the_runner(tmp_path):
    story = tmp_path / "story.py"
    story.write_text("import torch\nfrom ppl_models.runs import experiment\nfrom ppl_models import data\n"
                     "def f():\n    from ppl_models.judge.classifier import load_classifier\n    import numpy\n")
    assert [outside(n) for n in imported(story) if outside(n)] == [
        "a role folder (ppl_models.runs)", "a role folder (ppl_models.data)", "a role folder (ppl_models.judge)",
        "a library other than torch and Pyro"]


def test_the_top_of_the_package_shows_the_stories_their_parts_and_the_role_folders():
    top = {p.stem for p in (ROOT / "ppl_models").glob("*.py")} - {"__init__"}
    assert top == {"vae", "vae2", "cvae", "ssvae", "adgm", "vrnn", "seqvae", "draw", "linear_gaussian", "nets", "anneal",
                   "checks", "priors"}
    folders = {p.name for p in (ROOT / "ppl_models").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(ROLES)
    guides = {p.stem for p in (ROOT / "guides").glob("*.py")} - {"__init__", "heads"}
    assert guides <= top  # guides/<story>.py mirrors ppl_models/<story>.py


def test_every_story_s_prior_is_a_distribution_over_its_latent():
    """``model.prior(...)`` is what sampling, the manifold, the evaluator and the gaps ask for: a
    distribution (never a tuple of parameters) whose samples fit the model's latent site."""
    import torch
    from torch.distributions import Distribution

    from ppl_models.cvae import CVAE
    from ppl_models.draw import DRAW
    from ppl_models.seqvae import SeqVAE
    from ppl_models.ssvae import SSVAE
    from ppl_models.vae import VAE
    from ppl_models.vrnn import VRNN

    x = torch.rand(3, 784)
    from ppl_models.vae2 import TwoLayerVAE
    priors = {"vae": VAE(4, (8,)).prior(x), "vae2": TwoLayerVAE(4, 6, (8,), (8,)).prior(x), "ssvae": SSVAE(4, (8,)).prior(x), "cvae": CVAE(784, 4, (8,)).prior(x),
              "draw": DRAW(2, 4, 8).prior(x), "seqvae": SeqVAE(4, 8, 5).prior(torch.rand(3, 5, 2)),
              "vrnn": VRNN("bernoulli", "learned", 4, 8).prior(torch.zeros(3, 8), torch.zeros(3, 0)),
              "vrnn-i": VRNN("bernoulli", "standard", 4, 8).prior(torch.zeros(3, 8), torch.zeros(3, 0))}
    for name, prior in priors.items():
        assert isinstance(prior, Distribution), name
        z = prior.sample((2,))
        assert z.shape[-1] == 4 and prior.log_prob(z).shape[0] == 2, name
