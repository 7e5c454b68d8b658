"""Render each model's plate diagram (``pyro.render_model``) to PNG for the README.

    python examples/render_models.py            # writes examples/figures/model_<name>.png

Needs the Python package ``graphviz`` and the Graphviz ``dot`` program (Debian: ``apt-get install
graphviz``); where either is missing it says so and skips, without failing.
"""
import argparse
import importlib.util
import shutil
from pathlib import Path

import pyro
import torch

from ppl_models.cvae import CVAE, Baseline, missing_mask, observe
from ppl_models.draw import DRAW
from ppl_models.linear_gaussian import LinearGaussian
from ppl_models.seqvae import SeqVAE
from ppl_models.ssvae import SSVAE
from ppl_models.vae import VAE
from ppl_models.vrnn import VRNN


def models():
    """name -> (model function, example arguments)."""
    x = torch.rand(3, 784).bernoulli()
    missing = missing_mask(2).expand(3, 784)
    return {
        "linear_gaussian": (LinearGaussian().model, (torch.randn(3, 3),)),
        "vae": (VAE(4, (8,)).model, (x,)),
        "vae_gaussian": (VAE(4, (8,), likelihood="gaussian").model, (torch.rand(3, 784),)),
        "ssvae": (SSVAE(4, (8,)).model, (x, None)),
        "cvae": (CVAE(784, 4, (8,), Baseline(784, (8,))).model, (observe(x, missing), x, missing)),
        "seqvae": (SeqVAE(4, 8, 60).model, (torch.rand(3, 60, 2) * 27,)),
        "vrnn": (VRNN("bernoulli", "learned", 4, 8).model, (torch.rand(3, 4, 28).bernoulli(),)),  # 4 steps shown
        "draw": (DRAW(4, 4, 8, 5).model, (x,)),  # 4 glimpses shown
    }


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="examples/figures")
    p.add_argument("--only", nargs="*", help="model names to render (default: all)")
    p.add_argument("--smoke", action="store_true")
    return p


def main(args):
    if importlib.util.find_spec("graphviz") is None:
        print("skipping plate diagrams: the Python package 'graphviz' is not installed (pip install graphviz)")
        return []
    if shutil.which("dot") is None:
        print("skipping plate diagrams: the Graphviz 'dot' program is not installed (apt-get install graphviz)")
        return []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (fn, fn_args) in models().items():
        if args.only and name not in args.only:
            continue
        graph = pyro.render_model(fn, model_args=fn_args, render_distributions=True)
        graph.format = "png"
        path = graph.render(filename=f"model_{name}", directory=out, cleanup=True)
        written.append(path)
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main(parser().parse_args())
