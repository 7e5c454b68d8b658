"""The judge of generated digits: a small CNN trained once on the MNIST training images and cached.

Generated images are judged by what a classifier sees in them, not by eye. This network is trained by
the project (never downloaded) on the first 50,000 MNIST training images, its epoch picked on the last
10,000, its test error measured once on the 10,000 test images and stored beside the weights. The
inputs it is trained on are the grey images and, for half of every batch, a Bernoulli draw of them,
each shifted by up to two pixels, so that it reads probability maps, binary samples and slightly
off-centre digits alike::

    [B, 784] in [0, 1] -> conv 3x3 (16) -> ReLU -> max-pool 2 -> conv 3x3 (32) -> ReLU -> max-pool 2
                        -> linear (128) -> ReLU -> linear (10) logits

``load_classifier(device)`` returns the cached network (training it first, about two minutes on one
CPU thread, when the cache has none); ``python -m ppl_models.judge.classifier`` trains it again and prints
its errors. ``smoke=True`` is a seconds-long version on 6,000 images, cached apart, for tests.
"""
import argparse
import sys
import time

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from ppl_models.data import cache_dir, load_mnist
from ppl_models.inference.train import atomic_save

VERSION = 1
EPOCHS = 4


class DigitCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # 14x14
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 7x7
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        """``x``: ``[B, 784]`` or ``[B, 28, 28]`` pixel intensities in [0, 1] -> ``[B, 10]`` logits."""
        return self.net(x.reshape(-1, 1, 28, 28))

    @torch.no_grad()
    def predict(self, x, batch_size=1000):
        """The most probable digit of each image, ``[B]``, on the images' device."""
        was_training = self.training
        self.eval()
        out = torch.cat([self(x[i:i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)])
        self.train(was_training)
        return out


def augment(x, generator=None):
    """Half of the batch binarised, every image shifted by up to two pixels (zeros shifted in)."""
    b = len(x)
    x = x.reshape(b, 28, 28)
    binary = torch.rand(b, 1, 1, device=x.device, generator=generator) < 0.5
    x = torch.where(binary, torch.bernoulli(x, generator=generator), x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (2,), generator=generator).tolist()  # one shift per batch
    return padded[:, dy:dy + 28, dx:dx + 28].reshape(b, 784)


def error(net, split):
    return (net.predict(split.x) != split.y).float().mean().item()


def path_of(smoke=False):
    return cache_dir() / "classifier" / f"mnist_cnn_v{VERSION}{'_smoke' if smoke else ''}.pt"


def train_classifier(smoke=False, epochs=EPOCHS, seed=0, device="cpu", log=print):
    """Train the CNN on MNIST (the first 50,000 training images; 6,000 with ``smoke``), keep the epoch
    with the lowest validation error, measure its test error once, and save it atomically to
    :func:`path_of`. Returns ``(net, info)``."""
    torch.manual_seed(seed)
    train, valid, test = load_mnist("mnist", device, "grey")
    if smoke:
        train, valid, test, epochs = train.subset(slice(0, 6000)), valid.subset(slice(0, 1000)), \
            test.subset(slice(0, 1000)), 2
    net = DigitCNN().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    best, best_state, started = float("inf"), None, time.time()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(train), device=train.x.device)
        for i in range(0, len(train), 100):
            idx = perm[i:i + 100]
            loss = cross_entropy(net(augment(train.x[idx])), train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        err = error(net, valid)
        log(f"digit classifier epoch {epoch}: validation error {100 * err:.2f}%")
        if err < best:
            best, best_state = err, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    info = {"version": VERSION, "smoke": smoke, "epochs": epochs, "valid_error": best,
            "test_error": error(net, test), "train_seconds": time.time() - started, "seed": seed,
            "train_images": len(train), "test_images": len(test)}
    log(f"digit classifier: test error {100 * info['test_error']:.2f}% on {len(test)} test images "
        f"({info['train_seconds']:.0f} s)")
    path = path_of(smoke)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"state_dict": {k: v.cpu() for k, v in net.state_dict().items()}, "info": info}, path)
    net.eval()
    return net, info


def load_classifier(device="cpu", smoke=False, log=print):
    """``(net, info)``: the cached classifier on ``device``, trained first when there is none (or the
    cached file is unreadable). ``info['test_error']`` is its error on the MNIST test images."""
    path = path_of(smoke)
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            net = DigitCNN()
            net.load_state_dict(saved["state_dict"])
            return net.to(device).eval(), saved["info"]
        except Exception as err:  # a corrupt cache is trained again, never used
            log(f"digit classifier {path} unreadable ({err}); training it again")
    log(f"training the digit classifier once (cached in {path})")
    net, info = train_classifier(smoke=smoke, log=log)
    return net.to(device), info


def main(argv=None):
    p = argparse.ArgumentParser(description="Train the digit classifier that judges generated images.")
    p.add_argument("--smoke", action="store_true", help="6,000 images, two epochs (seconds)")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"argument --epochs: must be a positive integer, got {args.epochs}")
    if args.threads:
        torch.set_num_threads(args.threads)
    train_classifier(smoke=args.smoke, epochs=args.epochs)


if __name__ == "__main__":
    sys.exit(main())
