"""The D/C/K scaling study as a pipeline (a grid over keys of model_kwargs) and compare's
plots along each axis and against cost, on the PTB-XL sample (reduced)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_pareto_front_by_hand():
    from ecgtransfer.comparison.statistics import pareto_front

    cost = np.array([1.0, 2.0, 3.0, 2.0, np.nan, 4.0])
    score = np.array([0.5, 0.7, 0.6, 0.7, 0.9, 0.8])
    # 3 is beaten by 2 (cheaper, better); the tie 2/4 keeps both; NaN is never on it
    assert pareto_front(cost, score).tolist() == [True, True, False, True, False, True]


def test_default_model_named_in_compare_is_the_registry_default():
    from ecgtransfer.models import DEFAULT_MODEL
    from ecgtransfer.stages.compare import _DEFAULT_MODEL

    assert _DEFAULT_MODEL == DEFAULT_MODEL


def test_predictions_files_named_in_compare_are_those_finetune_writes():
    from ecgtransfer.stages.compare import _PREDICTIONS
    from ecgtransfer.training.predictions import OOF_PREDICTIONS, TEST_PREDICTIONS

    assert _PREDICTIONS == {"cv": OOF_PREDICTIONS, "test": TEST_PREDICTIONS}


@pytest.mark.slow
def test_the_scaling_pipeline_reduced_plots_each_axis_and_cost(tmp_path):
    """2 depths x 2 kernels at width 16, one seed, 3 folds, 1 epoch: every model is its own
    group with its own architecture values and cost; axes.csv holds the grid, cost grows with
    depth, and the pipeline's compare writes both figures."""
    from ecgtransfer.pipeline import load_pipeline, run_pipeline

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pipeline = load_pipeline(REPO / "pipelines" / "resnet_scaling.yaml", [
        f"work={tmp_path / 'work'}", f"tracking_uri={uri}",
        "finetune.grid.model_kwargs.layers=[[1,1,1],[2,2,2]]",
        "finetune.grid.model_kwargs.width=[16]", "finetune.grid.model_kwargs.kernel_size=[3,5]",
        "finetune.grid.seed=[0]", "finetune.epochs=1", "finetune.cv=3",
        "finetune.bootstrap=20", "compare.bootstrap=50"])
    results = run_pipeline(pipeline, progress=False)
    compare = next(r for r in results if r.kind == "compare")
    out = Path(compare.output)
    axes = pd.read_csv(out / "axes.csv")
    grid = set(zip(axes["model_kwargs.layers"], axes["model_kwargs.width"],
                   axes["model_kwargs.kernel_size"]))
    assert grid == {("[1, 1, 1]", 16, 3), ("[1, 1, 1]", 16, 5), ("[2, 2, 2]", 16, 3),
                    ("[2, 2, 2]", 16, 5)}
    assert (axes["n_test"] >= 300).all()            # every record tested once, out of fold
    assert ((axes["macro_auroc_low"] <= axes["macro_auroc"])
            & (axes["macro_auroc"] <= axes["macro_auroc_high"])).all()
    for kernel in (3, 5):
        part = axes[axes["model_kwargs.kernel_size"] == kernel].set_index("model_kwargs.layers")
        assert part.loc["[2, 2, 2]", "cost_macs"] > part.loc["[1, 1, 1]", "cost_macs"]
        assert part.loc["[2, 2, 2]", "cost_params"] > part.loc["[1, 1, 1]", "cost_params"]
    cost = pd.read_csv(out / "cost.csv")
    assert len(cost) == 4 and np.isfinite(cost["cost_latency_ms_b1"]).all()
    for name in ("axes.png", "cost.png", "comparison.png"):
        assert (out / name).stat().st_size > 10_000
    text = (out / "comparison.md").read_text()
    assert "layers=[2,2,2]" in text and "kernel_size=5" in text
    # the cross-validation run carries its folds' mean cost
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["resnet_scaling"],
                              filter_string="tags.`ecgtransfer.evaluation` = 'cv'")
    assert len(runs) == 4 and runs["metrics.cost_macs"].notna().all()


def test_a_grid_over_a_mapping_setting_keeps_its_other_keys():
    from ecgtransfer.pipeline import _combinations, load_pipeline

    pipeline = load_pipeline(REPO / "pipelines" / "resnet_scaling.yaml",
                             ["finetune.model_kwargs={stem_stride: 2}"])
    spec = next(s for s in pipeline.stages if s.name == "finetune")
    combos = _combinations(spec, spec.settings)
    assert len(combos) == 27 * 3
    kwargs = {json.dumps(c["model_kwargs"], sort_keys=True) for c in combos}
    assert len(kwargs) == 27
    assert all(c["model_kwargs"]["stem_stride"] == 2 for c in combos)
