"""The ui stage: the MLflow UI on this machine, opened at the fine-tune comparison."""

from __future__ import annotations

from dataclasses import dataclass

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

__all__ = ["UIConfig", "ui"]


@dataclass(frozen=True, kw_only=True)
class UIConfig:
    """Settings of ``ecgtransfer ui``."""

    tracking_uri: str | None = setting(None, "the runs to show (default: $MLFLOW_TRACKING_URI "
                                       "or sqlite:///mlflow.db)", role="tracking", metavar="URI")
    experiment: str | None = setting(None, "the experiment the link opens (default: the most "
                                     "recent pipeline's)", metavar="NAME")
    host: str = setting("127.0.0.1", "address to serve on (this machine only by default)")
    port: int = setting(5000, "port to serve on")
    workers: int = setting(1, "server processes (one is enough for one person)")

    def __post_init__(self) -> None:
        check(not 0 < self.port < 65536, "port", f"must be in 1 .. 65535, got {self.port}")
        check(self.workers < 1, "workers", "must be at least 1")


def ui(config: UIConfig, context: Context) -> StageResult:
    """Serve the MLflow UI until Ctrl-C (or SIGTERM), after saying the link that opens the
    fine-tune runs of the experiment in the model-training view."""
    from ecgtransfer.tracking import latest_pipeline_experiment, start_ui, ui_link

    tracker = context.tracker_for(config.tracking_uri)
    experiment = config.experiment or latest_pipeline_experiment(tracker)
    base = f"http://{config.host}:{config.port}"
    link = ui_link(tracker, base, experiment)
    found = tracker.client.get_experiment_by_name(experiment) if experiment else None
    server = start_ui(tracker, config.host, config.port, config.workers,
                      experiment_id=found.experiment_id if found else None)
    try:
        shown = f"experiment {experiment!r}" if experiment else "no pipeline run yet"
        context.say(f"MLflow UI ({shown}) at {link}\nCtrl-C stops it.")
        server.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way to stop it
        pass
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
    return StageResult(base, "MLflow UI stopped")


register_stage(Stage(
    "ui", UIConfig, ui, command=("ui",), pipeline=False, output=None,
    help="the MLflow UI on 127.0.0.1, opened at the fine-tune runs",
    description="Start the MLflow UI against the tracking store (default sqlite:///mlflow.db) "
                "on 127.0.0.1 and print the link that opens the fine-tune runs of the most "
                "recent pipeline's experiment (or --experiment) in the model-training view. "
                "Ctrl-C stops it."))
