"""Autoencoder versus VAE, at z = 2 and z = 10: the same networks, two guides.

The autoencoder is the VAE's model with the point-mass guide ``delta`` and ``--beta 0`` (pure
reconstruction); the VAE uses the ``diag`` guide and the full ELBO. For each, the test set is encoded
and drawn by label with the circle that holds 99% of the codes, and a lattice of points inside that
circle is decoded. For z = 10 both pictures live in the plane of the codes' two principal components.
The autoencoder's codes leave holes that decode to nonsense; the VAE's fill the prior's ball.

    python examples/ae_vs_vae.py            # writes results/ae_vs_vae/<run>/ae_vs_vae.png
"""
import pyro
import torch
from pyro.infer import Trace_ELBO

from guides.vae import make_guide
from ppl_models.data import Minibatches, load_mnist
from ppl_models.runs import experiment
from ppl_models.runs.experiment import positive_int
from ppl_models.runs.plots import plt, save_figure, tile
from ppl_models.vae import VAE

KINDS = {"autoencoder": ("delta", 0.0), "VAE": ("diag", 1.0)}


def parse_args(argv=None):
    p = experiment.parser(__doc__, epochs=30)
    p.add_argument("--z-dims", type=positive_int, nargs="+", default=[2, 10])
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[512, 256])
    p.add_argument("--lattice", type=positive_int, default=15, help="lattice points per side")
    return p.parse_args(argv)


def plane(codes):
    """An orthonormal 2-D basis for the codes: the axes themselves for z = 2, else the top two PCs."""
    mean = codes.mean(0)
    if codes.shape[1] == 2:
        return mean * 0, torch.eye(2)
    _, _, v = torch.pca_lowrank(codes - mean, q=2, center=False)
    return mean, v.T  # [2, z_dim]


def lattice_images(decode, center, basis, radius, n):
    """Decode an n x n lattice over [-radius, radius]^2 in the plane; points outside the circle stay blank."""
    t = torch.linspace(-radius, radius, n)
    a, b = torch.meshgrid(t, -t, indexing="xy")
    pts = torch.stack([a.reshape(-1), b.reshape(-1)], 1)
    inside = pts.norm(dim=1) <= radius
    with torch.no_grad():
        imgs = decode(center + pts @ basis)
    imgs[~inside] = 0.0
    return tile(imgs, n, n)


def main(args):
    if args.smoke:
        args.lattice = 5
    run = experiment.start(args, "ae_vs_vae", "z" + "-".join(map(str, args.z_dims)) + "-h" +
                           "-".join(map(str, args.hidden)),
                           serial_only="it trains an autoencoder and a VAE for every latent size, one after another")
    train, valid, test = experiment.smoke_subsets(args, *load_mnist("mnist", run.device, "dynamic", seed=args.seed))
    x_test, y_test = test.x[:5000], test.y[:5000].cpu()
    fig, axes = plt.subplots(len(args.z_dims), 4, figsize=(16, 4.2 * len(args.z_dims)), squeeze=False)
    metrics, history = {}, []
    for row, z_dim in enumerate(args.z_dims):
        for col, (kind, (guide_name, beta)) in enumerate(KINDS.items()):
            pyro.set_rng_seed(args.seed)
            model = VAE(z_dim, tuple(args.hidden)).to(run.device)
            guide = make_guide(guide_name, model).to(run.device)
            print(f"--- {kind}, z = {z_dim} ({guide_name} guide, beta {beta})")
            sub = run.out / f"{kind.lower()}_z{z_dim}"
            history += experiment.train(run, model, guide, Trace_ELBO(), Minibatches(train, args.batch_size),
                                        out=sub, step_kwargs=lambda e, b=beta: {"beta": b})
            experiment.load_best(run, model, guide, out=sub)
            with torch.no_grad():
                codes = guide.encode(x_test).cpu()
                rec = torch.nn.functional.binary_cross_entropy_with_logits(
                    model.decoder(codes.to(run.device)), x_test, reduction="none").sum(1).mean().item()
            center, basis = plane(codes)
            proj = (codes - center) @ basis.T
            radius = proj.norm(dim=1).quantile(0.99).item()
            ax = axes[row, 2 * col]
            ax.scatter(proj[:, 0], proj[:, 1], c=y_test, cmap="tab10", s=2, alpha=0.6, vmin=-0.5, vmax=9.5)
            ax.add_patch(plt.Circle((0, 0), radius, fill=False, color="k", ls="--"))
            ax.set_xlim(-1.1 * radius, 1.1 * radius), ax.set_ylim(-1.1 * radius, 1.1 * radius)
            ax.set_aspect("equal")
            ax.set_title(f"{kind}, z={z_dim}: test codes" + (" (top-2 PCs)" if z_dim > 2 else "")
                         + f"\n99% circle r={radius:.2f}")
            decode = lambda z: model.decode(z.to(run.device)).cpu()  # noqa: E731
            axes[row, 2 * col + 1].imshow(lattice_images(decode, center, basis, radius, args.lattice),
                                          cmap="gray_r", vmin=0, vmax=1)
            axes[row, 2 * col + 1].axis("off")
            axes[row, 2 * col + 1].set_title(f"{kind}, z={z_dim}: decoded lattice inside the circle")
            metrics[f"{kind.lower()}_z{z_dim}_radius_99"] = radius
            metrics[f"{kind.lower()}_z{z_dim}_test_reconstruction_bce"] = rec
            print(f"{kind} z={z_dim}: 99% of test codes within r = {radius:.2f}; "
                  f"test reconstruction BCE {rec:.1f} nats/image")
    fig.tight_layout()
    save_figure(fig, run.out / "ae_vs_vae.png", dpi=70)
    print(f"wrote {run.out / 'ae_vs_vae.png'}")
    return experiment.finish(run, metrics, history)


if __name__ == "__main__":
    experiment.cli(main, parse_args)
