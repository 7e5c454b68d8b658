"""examples/sweep.py: the grid, continuing an interrupted sweep, failures, and a local Ray sweep."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ppl_models.runs.experiment import Refused

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sweep", ROOT / "examples" / "sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)

FAKE = '''"""A stand-in example: writes results.json at once, fails with --fail 1, counts its runs."""
import argparse, json, sys
from pathlib import Path
def parse_args(argv=None):
    p = argparse.ArgumentParser()
    for flag in ("--size", "--seed", "--fail", "--threads"):
        p.add_argument(flag, type=int, default=0)
    p.add_argument("--out"); p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume", action="store_true")
    return p.parse_args(argv)
if __name__ == "__main__":
    a = parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    with open(out / "calls.txt", "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\\n")
    if a.fail:
        print("fake.py: error: this configuration fails on purpose", file=sys.stderr); sys.exit(1)
    (out / "results.json").write_text(json.dumps({"settings": {"size": a.size, "seed": a.seed},
        "metrics": {"score": a.size + 0.1 * a.seed}, "epochs": 1}))
'''


def test_the_grid_is_the_product_of_the_flags_given_several_values():
    runs, varying = sweep.configurations(["--labeled", "100", "600", "--seeds", "0", "1", "--epochs", "2", "--smoke"])
    assert varying == ["--labeled", "--seed"]
    assert [n for n, _ in runs] == ["labeled100-seed0", "labeled100-seed1", "labeled600-seed0", "labeled600-seed1"]
    assert runs[1][1] == ["--epochs", "2", "--smoke", "--labeled", "100", "--seed", "1"]
    assert sweep.folder_name("ssvae", varying, runs) == "ssvae-labeled-seed-smoke"


def test_sub_grids_joined_by_plus_make_one_sweep():
    runs, varying = sweep.configurations(["--labeled", "100", "--seeds", "0", "1", "2", "+",
                                          "--labeled", "600", "1000", "--seed", "0"])
    assert [n for n, _ in runs] == ["labeled100-seed0", "labeled100-seed1", "labeled100-seed2",
                                    "labeled600-seed0", "labeled1000-seed0"]
    assert varying == ["--labeled", "--seed"]


@pytest.mark.parametrize("tokens, message", [
    (["--out", "x", "--z-dim", "2", "3"], "--out is set by the sweep"),
    (["--resume"], "--resume is set by the sweep"),
    (["--z-dim", "2", "2"], "repeats a value"),
    (["--z-dim", "2", "+", "--z-dim", "2"], "repeats a run"),
    (["--z-dim", "2", "+"], "empty sub-grid"),
    (["2", "--z-dim"], "expected a flag"),
])
def test_bad_grids_are_refused(tokens, message):
    with pytest.raises(Refused, match=message):
        sweep.configurations(tokens)


def fake_examples(tmp_path, monkeypatch):
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "fake.py").write_text(FAKE)
    monkeypatch.setattr(sweep, "EXAMPLES", folder)
    return tmp_path / "sweep"


def test_finished_runs_are_skipped_and_a_failed_run_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    out = fake_examples(tmp_path, monkeypatch)
    argv = ["--serial", "--sweep-dir", str(out), "fake", "--size", "1", "2", "3", "--seeds", "0", "1"]
    (out / "size1-seed1").mkdir(parents=True)
    (out / "size1-seed1" / "checkpoint.pt").write_text("")           # an interrupted run: continued
    with pytest.raises(SystemExit) as e:
        sweep.main(sweep.parse_args(argv + ["+", "--size", "9", "--seed", "0", "--fail", "1"]))
    assert e.value.code == 1
    printed = capsys.readouterr()
    assert "size9-seed0-fail1 FAILED (exit 1): fake.py: error: this configuration fails on purpose" in printed.out
    assert "[7/7]" in printed.out and "1 run(s) failed: size9-seed0-fail1" in printed.err
    assert "(6 to start, 1 to continue, 0 done" in printed.out
    done = sorted(p.parent.name for p in out.glob("*/results.json"))
    assert done == [f"size{s}-seed{k}" for s in (1, 2, 3) for k in (0, 1)]
    assert "--resume" in (out / "size1-seed1" / "calls.txt").read_text()
    assert "--resume" not in (out / "size2-seed0" / "calls.txt").read_text()
    assert (out / "table.md").exists() and "score" in (out / "table.csv").read_text()
    # the same command again: the six finished runs are skipped, the failed one is tried again
    with pytest.raises(SystemExit):
        sweep.main(sweep.parse_args(argv + ["+", "--size", "9", "--seed", "0", "--fail", "1"]))
    assert "(1 to start, 0 to continue, 6 done, 0 held by another sweep)" in capsys.readouterr().out
    assert all(len((out / f"size{s}-seed0" / "calls.txt").read_text().splitlines()) == 1 for s in (1, 2, 3))
    assert len((out / "size9-seed0-fail1" / "calls.txt").read_text().splitlines()) == 2


def test_a_run_held_by_another_live_sweep_is_left_to_it(tmp_path, monkeypatch, capsys):
    out = fake_examples(tmp_path, monkeypatch)
    held = out / "size1"
    held.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (held / sweep.LOCK).write_text(json.dumps({"host": sweep.socket.gethostname(), "pid": other.pid}))
        sweep.main(sweep.parse_args(["--serial", "--sweep-dir", str(out), "fake", "--size", "1", "2"]))
    finally:
        other.kill()
    assert "1 held by another sweep" in capsys.readouterr().out
    assert not (held / "results.json").exists() and (out / "size2" / "results.json").exists()


def test_an_unknown_example_or_a_bad_value_is_one_line(tmp_path):
    def refused(*argv):
        proc = subprocess.run([sys.executable, str(ROOT / "examples" / "sweep.py"), *argv],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        return proc.stderr
    assert "unknown example 'nope'" in refused("nope", "--x", "1")
    err = refused("--sweep-dir", str(tmp_path), "vae", "--z-dim", "2", "0", "--smoke")
    assert "vae.py: error: argument --z-dim" in err and "configuration zdim0 is refused by vae.py" in err


def test_a_local_ray_sweep_of_two_smoke_runs(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "sweep.py"), "--parallel", "2",
                           "--sweep-dir", str(out), "vae", "--smoke", "--z-dim", "2", "3"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "[2/2]" in proc.stdout and (out / "table.md").exists()
    for z in (2, 3):
        r = json.loads((out / f"zdim{z}" / "results.json").read_text())
        assert r["settings"]["z_dim"] == z and "--threads 1" in (out / f"zdim{z}" / "sweep.log").read_text()


PREEMPTED = '''"""A stand-in example preempted on its first start: it saves a checkpoint, then its process is killed
(--preempt self) or the Ray worker running it is (--preempt worker); started again, it resumes."""
import argparse, json, os, signal, sys
from pathlib import Path
def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--preempt", default="none"); p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out"); p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume", action="store_true")
    return p.parse_args(argv)
if __name__ == "__main__":
    a = parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    with open(out / "calls.txt", "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\\n")
    if not (out / "checkpoint.pt").exists():
        (out / "checkpoint.pt").write_text("epoch 1")
        if a.preempt == "worker":
            os.kill(os.getppid(), signal.SIGKILL)
        if a.preempt in ("worker", "self"):
            os.kill(os.getpid(), signal.SIGKILL)
    assert a.resume == (a.preempt != "none"), "a run started again continues with --resume"
    (out / "results.json").write_text(json.dumps({"settings": {"preempt": a.preempt},
        "metrics": {"score": 1.0}, "epochs": 2}))
'''


def test_a_ray_task_killed_mid_run_or_losing_its_worker_is_retried_and_continues(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray")
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "preempted.py").write_text(PREEMPTED)
    monkeypatch.setattr(sweep, "EXAMPLES", folder)
    out = tmp_path / "sweep"
    sweep.main(sweep.parse_args(["--parallel", "2", "--max-retries", "1", "--sweep-dir", str(out), "preempted",
                                 "--preempt", "self", "worker"]))
    printed = capsys.readouterr().out
    for name, starts in (("preemptself", 2), ("preemptworker", 2)):
        assert (out / name / "results.json").exists(), name
        calls = (out / name / "calls.txt").read_text().splitlines()
        assert len(calls) == starts and ("--resume" in calls[-1]) == (starts > 1), (name, calls)
    assert "preemptself (1 time)" in printed and "preemptworker (1 time)" in printed
    table = (out / "table.md").read_text()
    assert "| preemptworker | 2 | 1 |" in table and "| preemptself | 2 | 1 |" in table
