"""Attribute vectors in a trained VAE's latent space: add "thicker" (or "smiling") to an image's code.

    python examples/attributes.py results/vae/mlp-diag-z50-bernoulli-beta1-seed0          # MNIST
    python examples/attributes.py results/vae/celeba-celeba-s64-c3-conv-conv-... --attributes Smiling Eyeglasses

For attribute a, with codes c(x) = the guide's representative code of q(z | x) (its mean), the vector
v_a is the mean code of the images that have a minus that of those that do not
(``ppl_models/runs/latent.py``), and the figure decodes c(x) + k v_a for test images x (rows) and k from -2 to 2 (columns).
MNIST has no attribute file: thickness and slant are measured on the images themselves with the
Morpho-MNIST definitions (``ppl_models/data/morpho.py``), and "has" / "has not" are the top and bottom
quartiles of ``--measure-images`` validation images. CelebA's 40 binary attributes come from its
attribute file. On MNIST the vector is then checked: for ``--check-images`` test images and each k,
the *measured* attribute of the decoded image against k (Spearman's rho per image, averaged; the mean
change per unit k from a least-squares line), and the share of decoded images whose class (read by
the project's digit classifier, ``ppl_models/judge/classifier.py``) is that of the decoded code at k = 0.
Writes ``<run>/attributes/<name>.png`` and ``attributes.json``.
"""
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from ppl_models.data.images import parse_dataset, read_celeba_lists
from ppl_models.data.morpho import MEASURES, measure
from ppl_models.judge.classifier import load_classifier
from ppl_models.runs import experiment, plots
from ppl_models.runs.experiment import Parser, Refused, positive_int
from ppl_models.runs.latent import codes, measured_vector, vector, walk

K = np.linspace(-2, 2, 9)


def parse_args(argv=None):
    p = Parser(prog="python examples/attributes.py", description=__doc__,
               formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("run", help="a trained VAE's run folder (examples/vae.py)")
    p.add_argument("--attributes", nargs="+", default=None,
                   help="MNIST: thickness, slant (default both); CelebA: names from its attribute file")
    p.add_argument("--measure-images", type=positive_int, default=10000,
                   help="validation images whose attribute defines the vector (quartiles when measured)")
    p.add_argument("--check-images", type=positive_int, default=1000, help="test images the vector is checked on")
    p.add_argument("--rows", type=positive_int, default=8, help="test images in the figure")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--smoke", action="store_true", help="a few images, for the tests")
    return p.parse_args(argv)


def figure(model, c, v, path, name, grid):
    imgs = walk(model.decode, c, v, K).transpose(0, 1).reshape(-1, model.x_dim)  # row = image, column = k
    plots.image_grid(imgs.cpu(), path, rows=len(c), cols=len(K),
                     title=f"{name}: decode(c(x) + k v), k = {K[0]:g} .. {K[-1]:g}", **grid)


def check(model, c, v, name, judge):
    """The measured attribute of the decoded images against k, and the share whose class stays."""
    decoded = walk(model.decode, c, v, K)                                            # [K, n, D]
    m = np.stack([measure(decoded[j], name) for j in range(len(K))], 1)  # [n, K]
    ok = ~np.isnan(m).any(1)
    rho = [spearmanr(K, row).statistic for row in m[ok]]
    rho = np.array([r for r in rho if not np.isnan(r)])
    slope = np.polyfit(np.tile(K, ok.sum()), m[ok].ravel(), 1)[0]
    classes = torch.stack([judge.predict(decoded[j]) for j in range(len(K))], 1)  # [n, K]
    kept = (classes == classes[:, len(K) // 2:len(K) // 2 + 1]).float()
    return {"spearman_rho_mean": float(rho.mean()), "spearman_rho_median": float(np.median(rho)),
            "images": int(ok.sum()), "change_per_unit_k": float(slope),
            "class_unchanged": float(kept[:, [0, -1]].mean()),  # at k = -2 and k = 2
            "class_unchanged_by_k": dict(zip(map(float, K), kept.mean(0).tolist())),
            "measured_at_k": dict(zip(map(float, K), np.nanmean(m, 0).tolist()))}


def main(args):
    device = experiment.device_of(args)
    run = experiment.rebuild(args.run, device)
    if run.name != "vae":
        raise Refused(f"{args.run} is a run of examples/{run.name}.py; attribute vectors need a VAE (examples/vae.py)")
    model, guide, vae_args, epoch = run.model, run.guide, run.args, run.epoch
    kind, _ = parse_dataset(vae_args.dataset)
    train, valid, test = run.load_data()
    n_measure, n_check = (200, 40) if args.smoke else (args.measure_images, args.check_images)
    digits = kind in ("mnist", "fashion-mnist")
    grid = {"shape": model.shape, "invert": digits}
    out = Path(args.run) / "attributes"
    out.mkdir(exist_ok=True)
    pool = valid.subset(slice(0, n_measure))
    c_pool, c_test = codes(guide.encode, pool.x), codes(guide.encode, test.x[:max(n_check, args.rows)])
    report = {"run": str(args.run), "epoch": epoch, "dataset": vae_args.dataset, "k": K.tolist(), "attributes": {}}
    if kind == "celeba":
        names = args.attributes or ["Smiling"]
        attr_names = read_celeba_lists(parse_dataset(vae_args.dataset)[1])[2]
        unknown = [n for n in names if n not in attr_names]
        if unknown:
            raise Refused(f"--attributes: unknown {unknown}; CelebA has {', '.join(attr_names)}")
        for name in names:
            has = pool.y[:, attr_names.index(name)] > 0.5
            if has.all() or not has.any():
                raise Refused(f"{name}: all or none of the {len(has)} validation images have it; no vector")
            v = vector(c_pool, has)
            figure(model, c_test[:args.rows], v, out / f"{name}.png", name, grid)
            report["attributes"][name] = {"with": int(has.sum()), "without": int((~has).sum()),
                                          "vector_norm": float(v.norm())}
            print(f"{name}: vector from {int(has.sum())} images with it, {int((~has).sum())} without; "
                  f"figure {out / (name + '.png')}")
    elif kind == "mnist":
        names = args.attributes or list(MEASURES)
        unknown = [n for n in names if n not in MEASURES]
        if unknown:
            raise Refused(f"--attributes: unknown {unknown}; MNIST's measured attributes are {', '.join(MEASURES)}")
        judge, info = load_classifier(device, smoke=args.smoke)
        report["judge_test_error"] = info["test_error"]
        for name in names:
            v, (lo, hi), values = measured_vector(c_pool, pool.x, name)
            figure(model, c_test[:args.rows], v, out / f"{name}.png", name, grid)
            r = check(model, c_test[:n_check], v, name, judge)
            r.update(quartiles=[float(lo), float(hi)], vector_norm=float(v.norm()), measured_on=len(values))
            report["attributes"][name] = r
            unit = "px" if name == "thickness" else "rad"
            print(f"{name}: quartiles {lo:.2f} / {hi:.2f} {unit} over {len(values)} validation images; "
                  f"decoded along the vector for {r['images']} test images: Spearman rho {r['spearman_rho_mean']:.2f} "
                  f"(median {r['spearman_rho_median']:.2f}), {r['change_per_unit_k']:+.3f} {unit} per unit k, "
                  f"class unchanged at k = +-2: {100 * r['class_unchanged']:.1f}%")
    else:
        raise Refused(f"{vae_args.dataset}: attribute vectors need MNIST (measured) or CelebA (its attribute file)")
    (out / "attributes.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out / 'attributes.json'}")
    return report


if __name__ == "__main__":
    experiment.cli(main, parse_args)
