"""Data-parallel training (ppl_models.inference.distributed) on this machine's CPUs: 2 processes, gloo."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppl_models.data import Batches
from ppl_models.inference import distributed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402
from conftest import refused_in_process  # noqa: E402


def torchrun(*args, nproc=2, restarts=0, env=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1",
           **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "--max-restarts", str(restarts), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def params(out):
    saved = torch.load(Path(out) / "params.pt", weights_only=False)
    return saved["world"], {**saved["model"], **{f"guide.{k}": v for k, v in saved["guide"].items()}}


def assert_close(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_two_gloo_processes_take_the_steps_of_one_process_on_the_same_global_batches(tmp_path):
    """After k = 8 steps (2 epochs of 4 global batches of 15; ranks get 8 and 7 examples) the
    parameters equal those of one process that sees the same global batches."""
    torchrun(ROOT / "tests" / "ddp_worker.py", tmp_path / "ddp", 2)
    ddp_worker.train(tmp_path / "one", 2)
    world, ddp = params(tmp_path / "ddp")
    _, one = params(tmp_path / "one")
    assert world == 2
    assert_close(ddp, one)
    changed = params(tmp_path / "one")[1]
    torch.manual_seed(0)
    assert any(not torch.equal(v, changed[k]) for k, v in _initial().items())  # training did move them


def _initial():
    from guides.vae import make_guide
    from ppl_models.vae import VAE
    torch.manual_seed(0)
    model = VAE(z_dim=4, hidden=(32,))
    guide = make_guide("delta", model)
    return {**model.state_dict(), **{f"guide.{k}": v for k, v in guide.state_dict().items()}}


def test_a_data_parallel_run_resumes_where_it_stopped(tmp_path):
    """Two epochs in two pieces (a 2-process run stopped after one epoch, then resumed by 2 processes)
    end where one uninterrupted run ends (here one process, which a 2-process run equals: the first test)."""
    torchrun(ROOT / "tests" / "ddp_worker.py", tmp_path / "pieces", 1)
    torchrun(ROOT / "tests" / "ddp_worker.py", tmp_path / "pieces", 2, "resume")
    ddp_worker.train(tmp_path / "straight", 2)
    assert_close(params(tmp_path / "straight")[1], params(tmp_path / "pieces")[1])
    ckpt = torch.load(tmp_path / "pieces" / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 2 and len(ckpt["rng_ranks"]) == 2 and ckpt["rng_shared"] is not None


def test_the_shared_stream_draws_the_batches_whatever_each_rank_draws_between_them():
    x = torch.arange(40.0)[:, None]
    torch.manual_seed(3)
    plain = [b[0].clone() for b in Batches(x, batch_size=8, make=lambda v: (v + torch.rand(1),))]
    torch.manual_seed(123)  # this rank's own stream: something else entirely
    shared = distributed.SharedRNG(3, torch.device("cpu"))
    seen = []
    for step in shared.batches(Batches(x, batch_size=8, make=lambda v: (v + torch.rand(1),))):
        seen.append(step[0].clone())
        torch.rand(5)  # the model's noise, from the rank's own stream
    assert len(seen) == len(plain) and all(torch.equal(a, b) for a, b in zip(seen, plain))


def test_an_example_trains_under_torchrun_and_rank_0_alone_writes(tmp_path):
    proc = torchrun(ROOT / "examples" / "vae.py", "--smoke", "--no-progress", "--out", tmp_path / "vae")
    assert proc.stdout.count("run folder") == 1 and proc.stdout.count("test log p(x)") == 1
    assert {"results.json", "checkpoint.pt", "samples.png"} <= {p.name for p in (tmp_path / "vae").iterdir()}


def test_an_example_that_cannot_train_data_parallel_says_why_under_torchrun(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "examples" / "cvae.py"), "--smoke", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode != 0 and "cvae does not train data-parallel" in proc.stderr
    assert not list(tmp_path.rglob("checkpoint.pt"))  # refused before training
    assert "ppl_models/" not in proc.stderr and "examples/cvae" not in proc.stderr.split("error:")[0]
    # (torchrun prints its own report of the failed children; the examples print one line each)


@pytest.mark.parametrize("example, flags, message", [
    ("guides_lab", ["--model", "vae"], "the guides lab does not train data-parallel"),
    ("ssvae", ["--seeds", "2"], "under torchrun one command trains one model")])
def test_the_other_examples_that_cannot_train_data_parallel_say_why(example, flags, message, tmp_path, monkeypatch):
    """As torchrun's rank 0 would see it (its environment), in this process: no MASTER_ADDR, so a
    command that went on to join a process group would fail at once instead of waiting for rank 1."""
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert message in refused_in_process(example, ["--smoke", "--out", tmp_path, *flags], code=None)
    assert not list(tmp_path.rglob("checkpoint.pt"))


def test_a_worker_killed_mid_epoch_is_restarted_by_torchrun_and_the_run_ends_as_an_uninterrupted_one(tmp_path):
    """Rank 1 dies (SIGKILL) in the second of three epochs; torchrun --max-restarts 1 starts both ranks
    again, they find the last complete checkpoint (epoch 1) by themselves and the run ends with the same
    parameters and the same last metrics row as a 2-process run that was never interrupted."""
    torchrun(ROOT / "tests" / "ddp_worker.py", tmp_path / "straight", 3)
    proc = torchrun(ROOT / "tests" / "ddp_worker.py", tmp_path / "killed", 3, restarts=1,
                    env={"DDP_WORKER_KILL": "2:2"})
    assert "Signals.SIGKILL" in proc.stderr or "exitcode: -9" in proc.stderr, proc.stderr[-2000:]  # it did die
    world_a, a = params(tmp_path / "straight")
    world_b, b = params(tmp_path / "killed")
    assert world_a == world_b == 2
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    last = [open(tmp_path / run / "metrics.csv").read().splitlines()[-1].split(",") for run in ("straight", "killed")]
    header = open(tmp_path / "straight" / "metrics.csv").readline().strip().split(",")
    keep = [i for i, k in enumerate(header) if k != "seconds"]
    assert [last[0][i] for i in keep] == [last[1][i] for i in keep] and last[0][0] == "3"


def test_without_restarts_left_a_killed_worker_ends_the_job_and_the_checkpoint_stays(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1",
           "DDP_WORKER_KILL": "2:2"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path / "run"), "3"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode != 0
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["example"] is None  # the last complete epoch, loadable


def test_an_example_under_torchrun_continues_by_itself_after_a_worker_is_killed(tmp_path):
    """The user's case: ``torchrun --max-restarts 1 examples/vae.py``, rank 1 killed from outside in the
    middle of training; the restarted group continues the run (no --resume typed) and finishes it."""
    import signal
    import time
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "vae"
    job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "--max-restarts", "1", str(ROOT / "examples" / "vae.py"), "--smoke", "--epochs", "40",
                            "--hidden", "64", "--no-progress", "--out", str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
    victim, deadline = None, time.time() + 240
    while victim is None and time.time() < deadline:
        metrics = out / "metrics.csv"
        if metrics.exists() and len(metrics.read_text().splitlines()) > 3:  # three epochs saved
            for pid in os.listdir("/proc"):
                try:
                    environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
                except (OSError, ValueError):
                    continue
                if b"RANK=1" in environ and str(out).encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                    victim = int(pid)
        time.sleep(0.1)
    assert victim is not None, "no rank 1 to kill"
    os.kill(victim, signal.SIGKILL)
    printed, _ = job.communicate(timeout=300)
    assert job.returncode == 0, printed[-3000:]
    assert "torchrun restart 1: continuing the run" in printed and "resumed from" in printed
    r = json.loads((out / "results.json").read_text())
    assert r["epochs"] == 40 and [int(line.split(",")[0]) for line in
                                  (out / "metrics.csv").read_text().splitlines()[1:]] == list(range(1, 41))
