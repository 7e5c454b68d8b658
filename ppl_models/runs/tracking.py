"""Experiment tracking: a run mirrored into MLflow or TensorBoard (``--track mlflow tensorboard``).

The run folder stays the source of truth; a tracker receives a copy of what it holds, as it is written:

    settings        the run's settings, as parameters (MLflow) or one text summary (TensorBoard)
    every epoch     the row of metrics.csv (loss, validation figures, learning rate, seconds), step = epoch
    at the end      the metrics of results.json, and the run's figures (every PNG in the folder)

MLflow writes to ``$MLFLOW_TRACKING_URI`` when set (any tracking server), else to a SQLite store under
``results/`` (``sqlite:///results/mlflow.db``, artifacts in ``results/mlruns``; ``mlflow ui
--backend-store-uri sqlite:///results/mlflow.db`` shows them). The experiment is the example's name, the
run's name its folder's. TensorBoard writes event files into the run folder itself (``tensorboard
--logdir results``). A resumed run continues its tracked run: MLflow's run id is kept in the folder
(``tracking.json``), and TensorBoard's writer drops the steps after the checkpoint it resumes from.

Both are optional: ``pip install -e '.[track]'``; asking for one that is not installed is refused in
one line that names the extra.
"""
import json
import math
import os
from pathlib import Path

TRACKERS = ("mlflow", "tensorboard")
STATE = "tracking.json"


class TrackerMissing(ValueError):
    """A tracker was asked for that is not installed."""


def _numbers(row):
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def _flat(settings):
    return {k: (json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in sorted(settings.items())}


class MLflowTracker:
    def __init__(self, out, example, settings, resume):
        try:
            import mlflow
        except ImportError:
            raise TrackerMissing("--track mlflow needs MLflow: pip install -e '.[track]'") from None
        self.mlflow, self.out = mlflow, Path(out)
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            root = Path("results").resolve()
            root.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{root / 'mlflow.db'}"
            artifacts = (root / "mlruns").as_uri()
        elif uri.startswith("sqlite:///"):  # artifacts beside the database, never in the working folder
            artifacts = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns").as_uri()
        else:  # a server or another store: its own artifact location
            artifacts = None
        self.client = mlflow.tracking.MlflowClient(uri)
        experiment = self.client.get_experiment_by_name(example)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(
            example, artifact_location=artifacts)
        kept = self._kept()
        if resume and kept.get("uri") == uri and kept.get("mlflow_run_id"):
            self.run_id = kept["mlflow_run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(experiment_id, run_name=self.out.name, tags={"run_folder": str(self.out)})
            self.run_id = run.info.run_id
            for k, v in _flat(settings).items():
                self.client.log_param(self.run_id, k, v[:6000])
            self._keep(uri=uri, mlflow_run_id=self.run_id)

    def _kept(self):
        path = self.out / STATE
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            return {}

    def _keep(self, **values):
        self.out.mkdir(parents=True, exist_ok=True)
        state = {**self._kept(), **values}
        tmp = self.out / (STATE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.out / STATE)

    def epoch(self, row):
        import time

        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(row["epoch"])) for k, v in _numbers(row).items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, results):
        for k, v in _numbers(results.get("metrics", {})).items():
            self.client.log_metric(self.run_id, f"test/{k}", v)
        for png in sorted(self.out.glob("*.png")):
            self.client.log_artifact(self.run_id, str(png))
        self.client.log_artifact(self.run_id, str(self.out / "results.json"))
        self.client.set_terminated(self.run_id)


class TensorBoardTracker:
    def __init__(self, out, example, settings, resume, start_epoch=1):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrackerMissing("--track tensorboard needs TensorBoard: pip install -e '.[track]'") from None
        self.out = Path(out)
        # purge_step: on a resume, the steps after the checkpoint (written before a crash) are dropped
        self.writer = SummaryWriter(log_dir=str(self.out), purge_step=start_epoch if resume else None)
        if not resume:
            self.writer.add_text("settings", "\n".join(f"    {k} = {v}" for k, v in _flat(settings).items()), 0)

    def epoch(self, row):
        for k, v in _numbers(row).items():
            if k != "epoch":
                self.writer.add_scalar(f"train/{k}", v, int(row["epoch"]))
        self.writer.flush()

    def finish(self, results):
        import numpy as np
        from PIL import Image
        step = int(results.get("epochs") or 0)
        for k, v in _numbers(results.get("metrics", {})).items():
            self.writer.add_scalar(f"test/{k}", v, step)
        for png in sorted(self.out.glob("*.png")):
            image = np.asarray(Image.open(png).convert("RGB"))
            self.writer.add_image(f"figures/{png.stem}", image, step, dataformats="HWC")
        self.writer.close()


def check_available(kinds):
    """Refuse (``TrackerMissing``, one line naming the extra) a tracker that is not installed."""
    import importlib.util
    need = {"mlflow": "mlflow", "tensorboard": "tensorboard"}
    for kind in kinds or ():
        if importlib.util.find_spec(need[kind]) is None:
            raise TrackerMissing(f"--track {kind} needs {'MLflow' if kind == 'mlflow' else 'TensorBoard'}: "
                                 "pip install -e '.[track]'")


def open_trackers(kinds, out, example, settings, resume, start_epoch=1):
    """The trackers ``kinds`` (a subset of ``TRACKERS``) for the run in ``out``; empty for none."""
    made = []
    for kind in kinds or ():
        if kind == "mlflow":
            made.append(MLflowTracker(out, example, settings, resume))
        elif kind == "tensorboard":
            made.append(TensorBoardTracker(out, example, settings, resume, start_epoch))
        else:
            raise ValueError(f"unknown tracker {kind!r}; choose from {', '.join(TRACKERS)}")
    return made
