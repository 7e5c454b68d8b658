"""Write a folder of RGB PNGs to try ``--dataset folder:PATH`` on: MNIST digits, coloured, on coloured
backgrounds (no photo set can be downloaded here, so this one is made from data the machine has).

    python examples/coloured_digits.py --out data/coloured-digits --images 20000 --size 32
    python examples/vae.py --dataset folder:data/coloured-digits --image-size 32 --channels 3 \\
        --decoder conv --guide conv

Image i: training digit i of MNIST (grey, 28x28) resized to ``--size``, used as the alpha of a random
ink colour over a random background colour (their brightness at least 0.35 apart, so the digit stays
visible): ``pixel = (1 - a) * background + a * ink``. Named ``<i>-<digit>.png``; seeded.
"""
import numpy as np
from PIL import Image

from ppl_models.data import load_raw
from ppl_models.runs.experiment import Parser, cli, positive_int


def parse_args(argv=None):
    p = Parser(prog="python examples/coloured_digits.py", description=__doc__,
               formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/coloured-digits", help="the folder to write (created)")
    p.add_argument("--images", type=positive_int, default=20000)
    p.add_argument("--size", type=positive_int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="40 images")
    return p.parse_args(argv)


def colours(rng):
    """An (ink, background) pair of RGB colours in [0, 1] whose brightness differs by at least 0.35."""
    while True:
        ink, background = rng.random(3), rng.random(3)
        if abs(ink.mean() - background.mean()) >= 0.35:
            return ink, background


def coloured(digit, size, rng):
    a = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR), np.float64) / 255
    ink, background = colours(rng)
    return ((1 - a[..., None]) * background + a[..., None] * ink) * 255


def main(args):
    from pathlib import Path
    n = 40 if args.smoke else args.images
    images, labels, _, _ = load_raw("mnist")
    if n > len(images):
        raise ValueError(f"--images {n}: MNIST has {len(images)} training digits")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for i in range(n):
        pixels = coloured(images[i], args.size, rng).round().astype(np.uint8)
        Image.fromarray(pixels).save(out / f"{i:05d}-{labels[i]}.png")
    print(f"wrote {n} {args.size}x{args.size} RGB PNGs to {out}")


if __name__ == "__main__":
    cli(main, parse_args)
