"""Every registered guide of every model, built the one way (``GUIDES[name](model, hidden)``), is
scored by the shared evaluator and, where the model's figures need it, encodes: a guide that traces
but cannot be evaluated or encoded after training fails here, not after a long run."""
import json
import re

import numpy as np
import pytest
import torch

import guides.adgm
import guides.cvae
import guides.draw
import guides.seqvae
import guides.ssvae
import guides.vae
import guides.vrnn
from ppl_models.adgm import AuxiliaryDGM
from ppl_models.cvae import CVAE, missing_mask, observe
from ppl_models.draw import DRAW
from ppl_models.inference.evaluate import evaluate
from ppl_models.seqvae import SeqVAE
from ppl_models.ssvae import SSVAE
from ppl_models.vae import VAE
from ppl_models.vrnn import PRIORS, VRNN

B = 6


def images():
    return torch.bernoulli(torch.rand(B, 784))


def check(r, exact=False):
    assert r["log_px"].shape == (B,) and np.isfinite(r["log_px"]).all() and np.isfinite(r["elbo"]).all()
    assert (r["log_px"] >= r["elbo"] - 1e-4).all()  # the IS bound is above the ELBO
    assert r["exact"] == exact


SMALL_MODELS = {guides.vae: lambda: VAE(4, (16,)), guides.ssvae: lambda: SSVAE(3, (16,)),
                guides.adgm: lambda: AuxiliaryDGM(3, 2, (16,)),
                guides.cvae: lambda: CVAE(784, 4, (16,)), guides.draw: lambda: DRAW(3, 4, 16),
                guides.vrnn: lambda: VRNN("bernoulli", "learned", 4, 16), guides.seqvae: lambda: SeqVAE(4, 16, 10)}


@pytest.mark.parametrize("module", list(SMALL_MODELS), ids=lambda m: m.__name__)
def test_every_registry_builds_each_guide_the_one_way(module):
    """``GUIDES[name](model, hidden=None)`` for every name gives a module with a ``guide`` method of the
    model's signature, registering parameters of its own; ``make_guide`` refuses an unknown name,
    listing the registered ones."""
    import inspect
    model = SMALL_MODELS[module]()
    for name, builder in module.GUIDES.items():
        guide = builder(model, None)
        assert isinstance(guide, torch.nn.Module), name
        assert list(inspect.signature(guide.guide).parameters) == list(inspect.signature(model.model).parameters)
        assert type(module.make_guide(name, model)) is type(guide)
    with pytest.raises(ValueError, match=rf"unknown guide 'nope'; choose one of {re.escape(str(sorted(module.GUIDES)))}"):
        module.make_guide("nope", model)


@pytest.mark.parametrize("name", sorted(guides.vae.GUIDES))
def test_vae_guides_evaluate_and_encode(name):
    model = VAE(4, (16,))
    guide = guides.vae.make_guide(name, model)
    x = images()
    codes = guide.encode(x)
    assert codes.shape == (B, 4) and torch.isfinite(codes).all()
    if name == "delta":
        with pytest.raises(ValueError, match="Delta"):
            evaluate(model, guide, x, num_samples=3)
    else:
        check(evaluate(model, guide, x, num_samples=3, particles="plate"))


@pytest.mark.parametrize("name", sorted(guides.ssvae.GUIDES))
def test_ssvae_guides_evaluate_and_encode(name):
    model = SSVAE(3, (16,))
    guide = guides.ssvae.make_guide(name, model)
    x = images()
    check(evaluate(model, guide, x, num_samples=3))  # y summed out (or sampled)
    assert guide.encode(x, torch.arange(B) % 10).shape == (B, 3)
    assert guide.classifier(x).shape == (B, 10)


@pytest.mark.parametrize("form", ["adgm", "sdgm"])
@pytest.mark.parametrize("name", sorted(guides.adgm.GUIDES))
def test_adgm_guides_evaluate_and_encode(name, form):
    model = AuxiliaryDGM(3, 2, (16,), form=form)
    guide = guides.adgm.make_guide(name, model)
    x = images()
    check(evaluate(model, guide, x, num_samples=3))  # y summed out, a and z sampled
    assert guide.encode(x, torch.arange(B) % 10).shape == (B, 3)
    guide.eval()
    assert guide.classifier(x).shape == (B, 10)


@pytest.mark.parametrize("name", sorted(guides.cvae.GUIDES))
def test_cvae_guides_evaluate(name):
    model = CVAE(784, 4, (16, 16))
    guide = guides.cvae.make_guide(name, model)
    y = torch.rand(B, 784)
    miss = missing_mask(1).expand(B, 784)
    check(evaluate(model, guide, observe(y, miss), y, miss, num_samples=3, particles="plate"))


@pytest.mark.parametrize("attention", [None, 2])
@pytest.mark.parametrize("name", sorted(guides.draw.GUIDES))
def test_draw_guides_evaluate(name, attention):
    model = DRAW(glimpses=3, z_dim=4, hidden=8, write_n=attention and 3)
    guide = guides.draw.make_guide(name, model, read_n=attention)
    check(evaluate(model, guide, images(), num_samples=3))


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("name", sorted(guides.vrnn.GUIDES))
def test_vrnn_guides_evaluate_with_lengths(name, prior):
    model = VRNN("strokes", prior, 3, 8)
    guide = guides.vrnn.make_guide(name, model)
    x = torch.randn(B, 9, 4)
    x[..., 2:] = (x[..., 2:] > 0).float()
    lengths = torch.tensor([9, 3, 5, 1, 9, 2])
    check(evaluate(model, guide, x, None, lengths=lengths, num_samples=3), exact=prior == "none")


@pytest.mark.parametrize("name", sorted(guides.seqvae.GUIDES))
def test_seqvae_guides_evaluate_and_encode(name):
    model = SeqVAE(3, 8, 12)
    guide = guides.seqvae.make_guide(name, model)
    x = 13.5 + 5 * torch.randn(B, 12, 2)
    check(evaluate(model, guide, x, num_samples=3, particles="plate"))
    assert guide.encode(x).shape == (B, 3)


def test_unknown_guide_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown guide 'gauss'; choose one of \['conv', 'delta', 'diag'"):
        guides.vae.make_guide("gauss", VAE(4, (16,)))


def test_the_readme_recipe_for_a_new_guide_works_as_written(tmp_path):
    """The front page's "Add a guide" code, added to guides/vae.py as the text says, gives a guide the
    evaluator scores and that encodes, and examples/vae.py trains it by name."""
    import os
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text.split("## Add a guide or a model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = dict(vars(guides.vae))
    registry = dict(guides.vae.GUIDES)
    namespace["GUIDES"] = registry
    exec(code, namespace)
    new = set(registry) - set(guides.vae.GUIDES)
    assert len(new) == 1
    name = new.pop()
    model = VAE(4, (16,))
    guide = registry[name](model)
    assert guide.encode(images()).shape == (B, 4)
    check(evaluate(model, guide, images(), num_samples=3, particles="plate"))
    shutil.copytree(root / "guides", tmp_path / "guides")  # the file edited as the README says
    with open(tmp_path / "guides" / "vae.py", "a") as f:
        f.write("\n\n" + code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    proc = subprocess.run([sys.executable, str(root / "examples" / "vae.py"), "--guide", name, "--smoke",
                           "--out", str(tmp_path / "run"), "--no-progress"], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["settings"]["guide"] == name
