"""A page to move through a trained run's latent space: one self-contained HTML file, offline.

    python -m ppl_models.runs.explore RUN_FOLDER                       # writes RUN_FOLDER/explore.html
    python -m ppl_models.runs.explore AE_RUN VAE_RUN --out ae_vs_vae.html   # two runs side by side
    python -m ppl_models.runs.explore RUN --screenshot page.png --set thickness=2   # and a picture of it

The page holds the run's decoder weights, the codes (means of q(z | x)) of the first ``--codes`` test
images with their labels and pixels, and its attribute vectors; its JavaScript decodes in the browser
with the same layers as PyTorch (``explore_page/explore.js``: linear, transposed and plain
convolutions, ReLU, tanh, softplus, sigmoid, in float64 from the float32 weights), so it works opened
from disk or served by ``python -m http.server``. In it:

- the latent map: for z = 2 the plane itself, for larger z a plane z = o + a u + b v through the
  codes' mean spanned by their first two principal components, or by the thickness and slant vectors
  (MNIST), with the test codes coloured by digit and, for N(0, I), the prior's 99% region on that plane
  (its conditional there is N(foot of 0, I): a circle of radius sqrt(chi2_2(0.99)) = 3.03);
- the image under the pointer, decoded live; a click pins a test image's code (in every run shown, when
  they share the test set), shift-click a second point for the interpolation between them;
- sliders adding multiples of the attribute vectors (``ppl_models/runs/latent.py``) to the pinned code:
  thickness and slant on MNIST, the attribute file's on CelebA (``--attributes``);
- samples from the prior (N(0, I) drawn in the page; a learned prior's samples drawn here, as a pool);
- the lattice: the prior's quantiles 0.05..0.95 on the plane (for z = 2, the manifold figure of examples/vae.py);
- a class selector for a label-conditioned decoder (M2's p(x | y, z); its sliders move the style z,
  the vectors taken from q(z | x, y) at the images' own labels).

Runs: ``examples/vae.py`` (one stochastic layer, MLP or conv decoder, any prior, the autoencoder
included) and ``examples/ssvae.py``.
"""
import argparse
import base64
import html
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ppl_models.data.images import parse_dataset, read_celeba_lists
from ppl_models.nets import ConvDecoder
from ppl_models.runs import experiment
from ppl_models.runs.experiment import Parser, Refused, positive_int
from ppl_models.runs.latent import codes, measured_vector, vector

PAGE = Path(__file__).with_name("explore_page")
CIRCLE_99 = math.sqrt(-2 * math.log(0.01))  # chi-square with 2 degrees of freedom, its 0.99 quantile
CHROMIUM = os.environ.get("PPL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]
EXAMPLES = ("vae", "ssvae")


def f32(t):
    return base64.b64encode(t.detach().cpu().float().contiguous().numpy().tobytes()).decode()


def u8(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).decode()


def decoder_ops(decoder):
    """The decoder as the page's list of layers (weights as base64 float32), ending in the sigmoid of
    ``decode``. Refuses, in one line, a layer the page does not compute."""
    ops = []

    def walk(m):
        if isinstance(m, nn.Sequential):
            for child in m:
                walk(child)
        elif isinstance(m, ConvDecoder):
            walk(m.dense)
            ops.append({"op": "reshape", "shape": [m.channels, *m.half]})
            walk(m.deconv)
        elif isinstance(m, nn.Linear):
            ops.append({"op": "linear", "n_in": m.in_features, "n_out": m.out_features, "W": f32(m.weight),
                        **({"b": f32(m.bias)} if m.bias is not None else {})})
        elif isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
            square = len(set(m.kernel_size)) == 1 and len(set(m.stride)) == 1 and len(set(m.padding)) == 1
            if not square or m.groups != 1 or set(m.dilation) != {1} or m.padding_mode != "zeros" or \
                    set(getattr(m, "output_padding", (0,))) != {0}:
                raise Refused(f"the page computes square, ungrouped, undilated convolutions; {m} is not one")
            kind = "conv_transpose" if isinstance(m, nn.ConvTranspose2d) else "conv"
            ops.append({"op": kind, "n_in": m.in_channels, "n_out": m.out_channels, "k": m.kernel_size[0],
                        "stride": m.stride[0], "padding": m.padding[0], "W": f32(m.weight),
                        **({"b": f32(m.bias)} if m.bias is not None else {})})
        elif isinstance(m, nn.Softplus) and (m.beta != 1 or m.threshold != 20):
            raise Refused(f"the page computes softplus with beta 1 and threshold 20, not {m}")
        elif type(m) in (nn.ReLU, nn.Tanh, nn.Softplus, nn.Sigmoid):
            ops.append({"op": type(m).__name__.lower()})
        else:
            raise Refused(f"the page's decoder computes Linear, ConvTranspose2d, Conv2d, ReLU, Tanh, Softplus "
                          f"and Sigmoid layers; {type(m).__name__} is not one of them")

    walk(decoder)
    ops.append({"op": "sigmoid"})
    return ops


def _plane(name, origin, u, v):
    """The plane origin + a u + b v with u, v made orthonormal (Gram-Schmidt); None if they are parallel."""
    u, v = u.double(), v.double()
    length = v.norm()
    u = u / u.norm()
    v = v - (v @ u) * u
    if not (v.norm() > 1e-6 * length):
        return None
    return {"name": name, "origin": origin.double().tolist(), "u": u.tolist(), "v": (v / v.norm()).tolist()}


CELEBA_SLIDERS = ("Smiling", "Eyeglasses", "Blond_Hair", "Male")


def run_payload(folder, n_codes=1000, n_measure=2000, n_prior=160, celeba_attributes=None, smoke=False):
    """Everything the page shows of one run, as JSON-ready values."""
    run = experiment.rebuild(folder, "cpu")
    if run.name not in EXAMPLES:
        raise Refused(f"{folder} is a run of examples/{run.name}.py; the explorer takes runs of "
                      + " and ".join(f"examples/{e}.py" for e in EXAMPLES))
    model, guide, args = run.model, run.guide, run.args
    if not hasattr(model, "decode") or getattr(args, "layers", 1) != 1 or getattr(model, "skip", False):
        raise Refused(f"{folder}: the explorer decodes one stochastic layer (z, and y where there is one); "
                      "the two-layer VAE and the SDGM draw x through a second latent")
    _, valid, test = run.load_data()
    if smoke:
        n_codes, n_measure = min(n_codes, 100), min(n_measure, 100)
    x = test.x[:n_codes]
    y = test.y[:n_codes] if test.y is not None and test.y.dim() == 1 else None  # digit labels (not CelebA's)
    conditional = run.name == "ssvae"

    def encode(images, labels):  # M2's codes: its style z, q(z | x, y) at the images' own labels
        if not conditional:
            return codes(guide.encode, images)
        with torch.no_grad():
            return torch.cat([guide.encode(images[i:i + 1000], labels[i:i + 1000]) for i in range(0, len(images), 1000)])
    c = encode(x, y)
    z_dim = c.shape[1]
    if z_dim < 2:
        raise Refused(f"{folder}: z has {z_dim} dimension; the map is a plane and needs at least 2")
    digits = getattr(args, "dataset", "mnist") in ("mnist", "fashion-mnist")
    prior = getattr(args, "prior", "standard")
    standard = prior == "standard"
    zero = torch.zeros(z_dim, dtype=torch.float64)
    if z_dim == 2:
        planes = [_plane("the latent plane (z1, z2)", zero, torch.tensor([1.0, 0]), torch.tensor([0, 1.0]))]
    else:
        centred = (c - c.mean(0)).double()
        _, _, vt = torch.linalg.svd(centred, full_matrices=False)
        planes = [_plane("the codes' first two principal components", c.mean(0), vt[0], vt[1])]
    attributes = []
    dataset = getattr(args, "dataset", "mnist")
    kind = parse_dataset(dataset)[0]
    pool = valid.x[:n_measure]
    if kind == "mnist":
        c_pool = encode(pool, valid.y[:n_measure] if valid.y is not None else None)
        for name in ("thickness", "slant"):
            v, quartiles, _ = measured_vector(c_pool, pool, name)
            attributes.append({"name": name, "vector": v.double().tolist(), "quartiles": quartiles})
    elif kind == "celeba":  # the attribute file's: with the attribute against without, on validation images
        names = read_celeba_lists(parse_dataset(dataset)[1])[2]
        unknown = [n for n in celeba_attributes or () if n not in names]
        if unknown:
            raise Refused(f"--attributes: unknown {unknown}; CelebA has {', '.join(names)}")
        c_pool = codes(guide.encode, pool)
        for name in celeba_attributes or [n for n in CELEBA_SLIDERS if n in names]:
            has = valid.y[:n_measure, names.index(name)] > 0.5
            if has.any() and not has.all():
                attributes.append({"name": name, "vector": vector(c_pool, has).double().tolist(),
                                   "with": int(has.sum()), "without": int((~has).sum())})
    if z_dim > 2 and len(attributes) >= 2:
        vecs = [torch.tensor(a["vector"]) for a in attributes[:2]]
        planes.append(_plane(f"the {attributes[0]['name']} and {attributes[1]['name']} vectors", c.mean(0), *vecs))
    planes = [p for p in planes if p is not None]
    if not planes:
        raise Refused(f"{folder}: its test codes span no plane (they lie on a line); the map needs two directions")
    with torch.no_grad():
        prior_samples = None if standard else model.prior(c).sample((n_prior,))
    results = _results(folder)
    description = ", ".join(f"{k} {v}" for k, v in _shown_settings(run).items())
    description += f"; checkpoint of epoch {run.epoch}"
    if results.get("test_log_px") is not None:
        description += f"; test log p(x) {results['test_log_px']:.2f} nats"
    if results.get("test_error") is not None:
        description += f"; test error {100 * results['test_error']:.2f}%"
    pixels = (x.cpu().numpy() * 255).round().clip(0, 255)
    return {
        "title": f"{run.name}: {Path(folder).name}", "description": description, "folder": str(folder),
        "example": run.name, "z_dim": z_dim, "shape": list(model.shape if hasattr(model, "shape") else (1, 28, 28)),
        "invert": digits, "classes": 10 if conditional else None, "decoder": decoder_ops(model.decoder),
        "codes": f32(c), "labels": u8(y.cpu().numpy()) if y is not None else None, "images": u8(pixels),
        "planes": planes, "attributes": attributes,
        "prior": prior, "prior_samples": f32(prior_samples) if prior_samples is not None else None,
        "circle": CIRCLE_99 if standard else None,
        "lattice": _normal_quantiles() if standard else None,
        "dataset": dataset,
    }


def _normal_quantiles(n=15):
    from scipy.stats import norm
    return norm.ppf(np.linspace(0.05, 0.95, n)).tolist()


def _results(folder):
    path = Path(folder) / experiment.RESULTS
    if not path.exists():
        return {}
    metrics = json.loads(path.read_text()).get("metrics", {})
    return {"test_log_px": metrics.get("test_log_px"), "test_error": metrics.get("test_error")}


def _shown_settings(run):
    keys = ("form", "guide", "decoder", "z_dim", "a_dim", "hidden", "activation", "prior", "objective", "particles",
            "beta", "labeled", "seed")
    return {k: run.settings.get(k, getattr(run.args, k, None)) for k in keys
            if run.settings.get(k, getattr(run.args, k, None)) is not None}


def write_page(folders, out, **kwargs):
    runs = [run_payload(f, **kwargs) for f in folders]
    linked = len({(r["dataset"], len(r["images"])) for r in runs}) == 1
    # "<" as its JSON escape: no text in the data can close or open a tag inside the script element
    data = json.dumps({"runs": runs, "linked": linked}, allow_nan=False).replace("<", "\\u003c")
    title = html.escape("latent space: " + " | ".join(r["title"] for r in runs))
    page = (PAGE / "explore.html").read_text()
    page = page.replace("__TITLE__", title).replace("__SCRIPT__", (PAGE / "explore.js").read_text())
    page = page.replace("__DATA__", data)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page)
    os.replace(tmp, out)
    return out, runs


def open_browser(playwright):
    """Headless Chromium (Debian's ``chromium`` package, or ``$PPL_CHROMIUM``) through Playwright."""
    if not Path(CHROMIUM).exists():
        raise Refused(f"no Chromium at {CHROMIUM}: apt-get install chromium, or set PPL_CHROMIUM to its path")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)


def screenshot(page_path, png, pin=0, second=None, sliders=(), plane=0, width=None):
    """Open the page in headless Chromium, pin test image ``pin`` (and ``second``, the interpolation's
    other end), set ``sliders`` (name, value) on the first run, draw the lattice, put the pointer on
    the map, and save a full-page PNG (128 colours). Returns the console errors."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise Refused("screenshots need Playwright: pip install -e '.[explore]'") from None
    errors = []
    with sync_playwright() as p:
        browser = open_browser(p)
        page = browser.new_page(viewport={"width": width or 880, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(Path(page_path).resolve().as_uri())
        page.wait_for_function("window.explorer && window.explorer.ready")
        n = page.evaluate("window.explorer.runs.length")
        shown = min(page.evaluate("window.explorer.runs.map(r => atob(r.codes).length / 4 / r.z_dim)"))
        for i in (pin, second):
            if i is not None and not 0 <= i < shown:
                raise Refused(f"--pin and --to take a test image on the map, 0 to {shown - 1}; got {i}")
        if n > 1 and not width:
            page.set_viewport_size({"width": 880 * n + 40, "height": 1000})
        if plane:
            select = page.locator('section[data-run="0"] select.plane')
            if select.count() == 0 or plane >= select.locator("option").count():
                raise Refused(f"--plane {plane}: the first run's map has no such plane")
            select.select_option(str(plane))
        for k in range(n):
            page.evaluate(f"window.explorer.pinTest({k}, {pin})")
            if second is not None:
                page.evaluate(f"window.explorer.pinSecond({k}, {second})")
        for name, value in sliders:
            slider = page.locator(f'section[data-run="0"] input[data-attribute="{name}"]')
            if slider.count() == 0:
                raise Refused(f"--set {name}: the run has no such attribute slider")
            slider.fill(str(value))
        for k in range(n):
            page.locator(f'section[data-run="{k}"] button.draw-lattice').click()
            box = page.locator(f'section[data-run="{k}"] canvas.map').bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.4)
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    from PIL import Image
    Image.open(png).convert("RGB").quantize(128).save(png, optimize=True)  # small enough to commit
    return errors


def parse_args(argv=None):
    p = Parser(prog="python -m ppl_models.runs.explore", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="one run folder, or two to show side by side")
    p.add_argument("--out", default=None, help="the page (default: <first run>/explore.html)")
    p.add_argument("--codes", type=positive_int, default=1000, help="test images on the map (the first N)")
    p.add_argument("--measure-images", type=positive_int, default=2000,
                   help="validation images whose measured thickness and slant define the vectors")
    p.add_argument("--attributes", nargs="+", default=None, metavar="NAME",
                   help="CelebA: the attribute file's names for the sliders (default: "
                        + ", ".join(CELEBA_SLIDERS) + ")")
    p.add_argument("--screenshot", default=None, metavar="PNG", help="also save a picture of the page (Chromium)")
    p.add_argument("--pin", type=int, default=0, help="the screenshot's pinned test image")
    p.add_argument("--plane", type=int, default=0,
                   help="the screenshot's plane: 0 the first two principal components, 1 thickness and slant")
    p.add_argument("--to", type=int, default=None, help="the screenshot's interpolation: to this test image")
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="the screenshot's slider values")
    p.add_argument("--smoke", action="store_true", help="a hundred images, for the tests")
    args = p.parse_args(argv)
    if len(args.runs) > 2:
        p.error(f"one run folder or two, got {len(args.runs)}")
    if args.plane < 0:
        p.error(f"--plane takes 0 (principal components) or 1 (attribute vectors), got {args.plane}")
    try:
        args.sliders = [(s.split("=")[0], float(s.split("=")[1])) for s in args.set]
    except (IndexError, ValueError):
        p.error(f"--set takes NAME=VALUE, e.g. thickness=2; got {args.set}")
    return args


def main(args):
    out = args.out or Path(args.runs[0]) / "explore.html"
    torch.set_num_threads(1)
    path, runs = write_page(args.runs, out, n_codes=args.codes, n_measure=args.measure_images,
                            celeba_attributes=args.attributes, smoke=args.smoke)
    size = path.stat().st_size / 2 ** 20
    print(f"wrote {path} ({size:.1f} MiB): " + "; ".join(
        f"{r['title']}, z = {r['z_dim']}, {len(r['planes'])} plane(s), sliders: "
        f"{', '.join(a['name'] for a in r['attributes']) or 'none'}" for r in runs))
    if args.screenshot:
        errors = screenshot(path, args.screenshot, pin=args.pin, second=args.to, sliders=args.sliders,
                            plane=args.plane)
        if errors:
            raise Refused(f"the page logged errors in Chromium: {errors[0]}")
        print(f"wrote {args.screenshot}")
    return path


if __name__ == "__main__":
    experiment.cli(main, parse_args, sys.argv[1:])
