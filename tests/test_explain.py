"""``ecgtransfer explain``: the labeller's fiducial points against LUDB's cardiologists, Captum's
attributions checked where the answer is known (a linear model), the faithfulness curves and the
randomisation check, the ECG-paper figure's scale, and the stage end to end on a fine-tuned
classifier and a pretrained regressor (files, MLflow, pipeline, one-line errors)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ecgtransfer.explain import (OTHER, WAVES, deletion_insertion, ecg_attribute, randomized_model,
                                 rank_correlation, wave_labels, wave_segments)
from ecgtransfer.explain.attribution import METHODS
from ecgtransfer.features.intervals import WAVE_COLUMNS, ecg_waves
from ecgtransfer.features.reference import ludb_beats

EIGHT = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
REPO = Path(__file__).resolve().parents[1]


def _ludb(ludb_root: Path, rec: int, fs: float = 500.0):
    import wfdb

    from ecgtransfer.data.transforms import resample

    r = wfdb.rdrecord(str(ludb_root / "data" / str(rec)))
    rows = [[n.upper() if n != "avr" else n for n in r.sig_name].index(lead) for lead in EIGHT]
    x = r.p_signal.T[rows].astype(np.float32)
    return (resample(x, r.fs, fs) if fs != r.fs else x), r


@pytest.mark.parametrize("fs", [500.0, 100.0])
def test_fiducial_points_follow_the_cardiologists(ludb_root, fs):
    """Every beat's marks against LUDB's (the median over the leads of each mark of the same
    beat): the median absolute error of each mark over 12 records is within a tolerance that
    holds at 500 and 100 Hz (the T onset is the loosest mark, for cardiologists too)."""
    limits = {"p_on": 20, "p_off": 20, "qrs_on": 15, "qrs_off": 15, "t_on": 35, "t_off": 20}
    errors = {k: [] for k in limits}
    for rec in range(1, 100, 8):
        x, _ = _ludb(ludb_root, rec, fs)
        beats, row = ecg_waves(x, fs, EIGHT, record_id=str(rec))
        assert list(beats.columns) == list(WAVE_COLUMNS)
        ref = ludb_beats(ludb_root / "data" / str(rec), beats["r"].to_numpy(), fs)
        assert len(ref) == len(beats) and (ref["n_leads"] > 0).mean() > 0.6
        for k in limits:
            errors[k] += list(np.abs(beats[k] - ref[k]).dropna() * 1000 / fs)
    for k, limit in limits.items():
        assert len(errors[k]) > 40, k
        assert np.median(errors[k]) < limit, (k, np.median(errors[k]))


def test_waves_label_every_sample_and_segments_cover_the_record(ludb_root):
    x, _ = _ludb(ludb_root, 1, 100.0)
    beats, _ = ecg_waves(x, 100.0, EIGHT)
    labels = wave_labels(beats, x.shape[1])
    assert labels.shape == (x.shape[1],) and set(np.unique(labels)) <= set(range(OTHER + 1))
    # every wave is present, in beat order: P before PR before QRS before ST before T
    first = [int(np.flatnonzero(labels == k)[0]) for k in range(len(WAVES))]
    assert first == sorted(first)
    time_qrs = (labels == WAVES.index("qrs")).mean()
    assert 0.05 < time_qrs < 0.25
    mask, segments = wave_segments(labels, len(EIGHT), max_other=20)
    assert mask.shape == x.shape and mask.min() == 0 and mask.max() == len(segments) - 1
    assert set(segments["wave"]) == {*WAVES, "other"}
    sizes = (segments["stop"] - segments["start"]).to_numpy()
    assert sizes.sum() == x.size and sizes[segments["wave"].to_numpy() == "other"].max() <= 20
    # a record without beats: nothing but windows of "other"
    flat, _ = wave_segments(wave_labels(beats.iloc[:0], 100), 2, max_other=30)
    assert flat.max() == 2 * 4 - 1


class _Linear(nn.Module):
    """``out = sum(w * x)``: every method's answer is known."""

    def __init__(self, w: np.ndarray):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32)[None])

    def forward(self, x):
        return (self.w * x).sum(dim=(1, 2))[:, None]


def _linear_case(ludb_root):
    x, _ = _ludb(ludb_root, 3, 100.0)
    beats, _ = ecg_waves(x, 100.0, EIGHT)
    labels = wave_labels(beats, x.shape[1])
    w = np.zeros_like(x)
    w[:, labels == WAVES.index("qrs")] = 1.0  # the model sees only the QRS complexes
    mask, segments = wave_segments(labels, len(EIGHT), max_other=20)
    return x, labels, w, mask, segments


def test_attributions_of_a_linear_model_are_exact(ludb_root):
    x, labels, w, mask, _ = _linear_case(ludb_root)
    model = _Linear(w).eval()
    ig = ecg_attribute(model, x, 0, "integrated_gradients", n_steps=8)
    np.testing.assert_allclose(ig, w * x, atol=1e-5)
    occ = ecg_attribute(model, x, 0, "occlusion", mask=mask)
    per_segment = np.bincount(mask.ravel(), weights=occ.ravel().astype(float))
    np.testing.assert_allclose(per_segment, np.bincount(mask.ravel(), weights=(w * x).ravel()),
                               atol=1e-4)
    assert np.abs(ig[:, labels != WAVES.index("qrs")]).max() == 0
    with pytest.raises(ValueError, match="unknown attribution method 'saliency'"):
        ecg_attribute(model, x, 0, "saliency")


def test_deletion_and_insertion_rank_the_true_evidence_above_random(ludb_root):
    x, _, w, mask, _ = _linear_case(ludb_root)
    model = _Linear(w).eval()
    truth = w * x
    full = float(truth.sum())
    good = deletion_insertion(model, x, 0, truth, mask, steps=10)
    assert good.full == pytest.approx(full, rel=1e-5) and good.flat == 0
    assert good.deletion[0] == pytest.approx(full, rel=1e-5)
    assert good.deletion[-1] == pytest.approx(0.0, abs=1e-4)
    assert good.insertion[0] == pytest.approx(0.0, abs=1e-4)
    assert good.insertion[-1] == pytest.approx(full, rel=1e-5)
    assert good.fractions[0] == 0 and good.fractions[-1] == pytest.approx(1.0)
    assert np.all(np.diff(good.fractions) >= 0)
    rng = np.random.default_rng(0)
    rand = [deletion_insertion(model, x, 0, None, mask, steps=10, rng=rng) for _ in range(5)]

    def auc(c, kind):
        return float(np.trapezoid(getattr(c, kind), c.fractions)) / full

    assert auc(good, "deletion") < np.mean([auc(c, "deletion") for c in rand]) - 0.2
    assert auc(good, "insertion") > np.mean([auc(c, "insertion") for c in rand]) + 0.2
    # ranking by the opposite of the evidence is worse than random
    bad = deletion_insertion(model, x, 0, -truth, mask, steps=10)
    assert auc(bad, "deletion") > auc(good, "deletion")
    # an interval's closeness to the record's own output: 0 at the record, in units of scale
    close = deletion_insertion(model, x, 0, truth, mask, readout="closeness", scale=2.0, steps=10)
    assert close.deletion[0] == 0 and close.insertion[-1] == pytest.approx(0.0, abs=1e-6)
    assert close.insertion[0] == pytest.approx(-abs(full) / 2.0, rel=1e-5)
    assert close.deletion.max() <= 0
    # a class's probability, as its task makes it, stays a probability
    from ecgtransfer.training.tasks import ClassificationTask

    task = ClassificationTask(["a"], multilabel=True)
    prob = deletion_insertion(model, x, 0, truth, mask, readout=task.probabilities, steps=10)
    assert 0 <= prob.deletion.min() and prob.insertion.max() <= 1
    assert prob.deletion[0] == pytest.approx(task.probabilities(np.array([[full]]))[0, 0])
    with pytest.raises(ValueError, match="unknown readout 'odds'"):
        deletion_insertion(model, x, 0, truth, mask, readout="odds")


def test_rank_correlation_and_the_randomised_model():
    from ecgtransfer.models.regressor import blank_regressor

    a = np.random.default_rng(1).normal(size=(8, 500))
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert abs(rank_correlation(a, np.random.default_rng(2).normal(size=(8, 500)))) < 0.1
    assert np.isnan(rank_correlation(np.zeros(10), a[0, :10]))
    torch.manual_seed(0)
    model = blank_regressor({"model": "resnet1d_fast", "model_kwargs": {}, "targets": ["qrs"],
                             "fs": 100, "n_samples": 1000, "leads": EIGHT}).eval()
    model.lead_std.fill_(2.0)
    with torch.no_grad():  # as if trained: no weight is at its initial value
        for p in model.parameters():
            p.mul_(1.5).add_(0.1)
    state = torch.get_rng_state()
    other = randomized_model(model, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the caller's generator is not drawn from
    for (name, p), q in zip(model.named_parameters(), other.parameters()):
        assert not torch.equal(p, q), name
    assert torch.equal(other.lead_std, model.lead_std)  # the input normalisation is kept
    again = randomized_model(model, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(other.parameters(), again.parameters()))


def test_grad_cam_reads_the_last_feature_map_and_refuses_a_recurrent_trunk(ludb_root):
    from ecgtransfer.models.regressor import blank_regressor

    x, _ = _ludb(ludb_root, 5, 100.0)
    meta = {"model_kwargs": {}, "targets": ["qrs"], "fs": 100, "n_samples": 1000, "leads": EIGHT}
    torch.manual_seed(0)
    cnn = blank_regressor({**meta, "model": "resnet1d_fast"}).eval()
    cam = ecg_attribute(cnn, x, 0, "grad_cam")
    assert cam.shape == x.shape and cam.min() >= 0
    np.testing.assert_allclose(cam, np.broadcast_to(cam[0], cam.shape))  # no lead resolution
    lstm = blank_regressor({**meta, "model": "lstm"}).eval()
    with pytest.raises(ValueError, match="grad_cam: the architecture lstm has no convolutional "
                                         "feature map"):
        ecg_attribute(lstm, x, 0, "grad_cam")
    assert ecg_attribute(lstm, x, 0, "integrated_gradients", n_steps=4).shape == x.shape


def test_the_figure_is_drawn_on_standard_ecg_paper(ludb_root):
    from ecgtransfer.explain.figures import MM_PER_MV, MM_PER_S, ecg_paper

    x, _ = _ludb(ludb_root, 2, 100.0)
    fig = ecg_paper(x, 100.0, EIGHT, {"integrated_gradients": x, "occlusion": -x},
                    title="2", notes=["true: NORM"])
    ax = fig.axes[0]
    box = ax.get_position()
    width_mm = box.width * fig.get_figwidth() * 25.4
    height_mm = box.height * fig.get_figheight() * 25.4
    assert width_mm == pytest.approx(10 * MM_PER_S, rel=0.01)  # 10 s at 25 mm/s
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert (x1 - x0) == pytest.approx(10 * MM_PER_S) and ax.get_aspect() == 1.0
    assert height_mm / (y1 - y0) == pytest.approx(1.0, rel=0.01)  # 1 data unit = 1 mm
    trace = ax.lines[0].get_ydata()
    np.testing.assert_allclose(np.ptp(trace), np.ptp(x[0]) * MM_PER_MV, rtol=1e-5)


# ---- the stage --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(ptbxl_labelled, tmp_path_factory):
    """A QRS regressor pretrained on PTB-XL half A and a classifier fine-tuned from it on half B,
    briefly, tracked in MLflow."""
    from conftest import run_stage
    from ecgtransfer.stages.finetune import FinetuneConfig
    from ecgtransfer.stages.pretrain import PretrainConfig

    folder = tmp_path_factory.mktemp("explain")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    pre = PretrainConfig(store=str(ptbxl_labelled.path), targets=["qrs"], split="A", fs=100.0,
                         epochs=2, batch_size=32, device="cpu", out=str(folder / "pretrain"),
                         tracking_uri=uri, experiment="pre")
    run_stage("pretrain", pre).details
    ft = FinetuneConfig(store=str(ptbxl_labelled.path), split="B", epochs=2, batch_size=32,
                        device="cpu", bootstrap=20, out=str(folder / "ft"), tracking_uri=uri,
                        experiment="ft", strategy="single", task="multi_label",
                        sources=[str(folder / "pretrain" / "qrs")])
    result = run_stage("finetune", ft).details
    return {"folder": folder, "uri": uri, "store": ptbxl_labelled, "ft": folder / "ft",
            "ft_run": result.run_id, "qrs": folder / "pretrain" / "qrs"}


def _explain(trained, tmp_path, **kw):
    from ecgtransfer.stages import Context
    from ecgtransfer.stages.explain import ExplainConfig, explain

    values = dict(model=str(trained["ft"]), store=str(trained["store"].path), max_records=3,
                  ig_steps=8, curve_steps=8, random_orders=2, tracking_uri=trained["uri"],
                  out=str(tmp_path / "explain"))
    values.update(kw)
    return explain(ExplainConfig(**values), Context(progress=False))


def test_explain_a_classifier_writes_its_figures_and_tables_and_logs_them(trained, tmp_path):
    import mlflow

    result = _explain(trained, tmp_path)
    out = Path(result.output)
    test = pd.read_csv(trained["ft"] / "test_predictions.csv", dtype={"record_id": str})
    records = pd.read_csv(out / "records.csv", dtype={"record_id": str})
    assert list(dict.fromkeys(records["record_id"])) == list(test["record_id"][:3])
    # each record's explained outputs are its true classes
    for r in records.itertuples():
        assert r.output in str(r.true).split()
    figures = sorted((out / "figures").glob("*.png"))
    assert len(figures) == len(records)
    assert (out / "explain.pdf").read_bytes().count(b"/Type /Page\n") + \
        (out / "explain.pdf").read_bytes().count(b"/Type /Page ") >= len(records)
    share = pd.read_csv(out / "wave_share.csv")
    parts = [f"share_{p}" for p in (*WAVES, "other")]
    np.testing.assert_allclose(share[parts].sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(share[[p.replace("share", "time") for p in parts]].sum(axis=1), 1.0,
                               atol=1e-6)
    faith = pd.read_csv(out / "faithfulness.csv")
    assert set(faith["method"]) == {*METHODS, "random"}
    overall = faith[faith["output"] == "all"].set_index("method")
    assert overall.loc["random", "n"] == overall.loc["occlusion", "n"]  # one mean per record
    sanity = pd.read_csv(out / "sanity.csv").set_index("method")
    assert sanity["spearman_mean"].between(-1, 1).all() and set(sanity.index) == set(METHODS)
    assert sanity["spearman_input"].between(-1, 1).all()
    assert set(sanity["randomisation"]) <= {"differs clearly", "differs partly",
                                             "hardly differs (fails)"}
    rand = overall.loc["random"]
    np.testing.assert_allclose(overall["deletion_vs_random"],
                               overall["deletion_auc"] - rand["deletion_auc"], atol=1e-9)
    methods = overall.drop(index="random")
    assert (methods["deletion_vs_random_ci_low"] <= methods["deletion_vs_random"]).all()
    assert (methods["insertion_vs_random"] <= methods["insertion_vs_random_ci_high"]).all()
    assert (share["share_qrs_ci_low"] <= share["share_qrs"]).all()
    assert (share["share_qrs"] <= share["share_qrs_ci_high"]).all()
    per_record = pd.read_csv(out / "wave_share_records.csv", dtype={"record_id": str})
    assert set(per_record["record_id"]) == set(records["record_id"])
    timing = pd.read_csv(out / "timing.csv")
    assert (timing["seconds_per_record_output"] > 0).all()
    arrays = np.load(next((out / "attributions").glob("*.npz")), allow_pickle=False)
    assert arrays["signal"].shape == (8, 1000) and any("/" in k for k in arrays.files)
    assert "faithfulness" in result.summary and "logged to MLflow run" in result.summary
    # logged to the fine-tune's own run, under the settings' hash
    mlflow.set_tracking_uri(trained["uri"])
    info = json.loads((out / "explain.json").read_text())
    listed = [f.path for f in mlflow.MlflowClient().list_artifacts(
        trained["ft_run"], f"explain/{info['settings_hash']}")]
    assert any(p.endswith("wave_share.png") for p in listed)
    assert any(p.endswith("figures") for p in listed)


def test_a_baseline_explanation_is_compared_record_by_record(trained, tmp_path):
    first = _explain(trained, tmp_path, methods=["grad_cam"], max_records=3, log=False,
                     figures=False, sanity=False, out=str(tmp_path / "a"))
    # a record without shares in the baseline (an all-zero Grad-CAM map) is left out of the pairs
    per_record = Path(first.output) / "wave_share_records.csv"
    table = pd.read_csv(per_record, dtype={"record_id": str})
    n = int((table["output"] == table["output"].iloc[0]).sum())
    table.loc[0, [c for c in table.columns if c.startswith("share_")]] = np.nan
    table.to_csv(per_record, index=False)
    second = _explain(trained, tmp_path, methods=["grad_cam"], max_records=3, log=False,
                      figures=False, sanity=False, out=str(tmp_path / "b"),
                      baseline=first.output)
    vs = pd.read_csv(Path(second.output) / "wave_share_vs_baseline.csv")
    assert set(vs["part"]) == {*WAVES, "other"} and (vs["n_records"] >= 1).all()
    first_output = vs[vs["output"] == table["output"].iloc[0]]
    assert (first_output["n_records"] == n - 1).all()
    # the same model on the same records: no difference, and an interval of none
    np.testing.assert_allclose(vs[["difference", "ci_low", "ci_high"]], 0.0, atol=1e-12)
    assert "QRS share against the baseline's" in second.summary
    with pytest.raises(ValueError, match="--baseline .*: no wave_share_records.csv"):
        _explain(trained, tmp_path, methods=["grad_cam"], max_records=1, log=False,
                 figures=False, baseline=str(tmp_path))
    with pytest.raises(ValueError, match="no record, output and method explained in both"):
        _explain(trained, tmp_path, methods=["occlusion"], max_records=1, log=False,
                 figures=False, sanity=False, baseline=first.output)


def test_explain_is_reproducible_and_replaces_its_folder_whole(trained, tmp_path):
    first = _explain(trained, tmp_path, methods=["occlusion"], max_records=2, log=False,
                     figures=False)
    a = pd.read_csv(Path(first.output) / "curves.csv")
    stale = Path(first.output) / "stale.txt"
    stale.write_text("from before")
    second = _explain(trained, tmp_path, methods=["occlusion"], max_records=2, log=False,
                      figures=False)
    b = pd.read_csv(Path(second.output) / "curves.csv")
    pd.testing.assert_frame_equal(a, b)
    assert not stale.exists()
    assert not list(tmp_path.glob(".explain.*"))  # no partial folder left
    # a failing run leaves the previous folder as it was
    with pytest.raises(ValueError, match="--outputs XYZ"):
        _explain(trained, tmp_path, outputs=["XYZ"], log=False)
    assert (Path(second.output) / "curves.csv").exists() and not list(tmp_path.glob(".explain.*"))


def test_explain_a_qrs_regressor_reports_whether_it_sits_on_the_qrs(trained, tmp_path):
    test = pd.read_csv(trained["ft"] / "test_predictions.csv", dtype={"record_id": str})
    result = _explain(trained, tmp_path, model=str(trained["qrs"]),
                      records=list(test["record_id"][:2]), methods=["occlusion", "grad_cam"],
                      sanity=False)
    share = pd.read_csv(Path(result.output) / "wave_share.csv")
    assert set(share["output"]) == {"qrs"} and (share["defining"] == "qrs").all()
    np.testing.assert_allclose(share["defining_share"], share["share_qrs"])
    np.testing.assert_allclose(share["defining_enrichment"], share["share_qrs"] / share["time_qrs"])
    # on it only where the QRS holds 1.5 times its share of the time and is the most enriched
    expect = (share["defining_enrichment"] >= 1.5) & (share["most_enriched"] == "qrs")
    assert (share["on_defining_wave"] == expect).all()
    assert share["records_on_defining_wave"].between(0, 1).all()
    records = pd.read_csv(Path(result.output) / "records.csv")
    assert records["pred_qrs"].between(20, 300).all()


def test_the_model_is_found_by_run_id_and_uri_as_by_folder(trained, tmp_path):
    from ecgtransfer import tracking
    from ecgtransfer.transfer import load_model

    tracker = tracking.Tracker(trained["uri"])
    by_folder = load_model(str(trained["ft"]), tracker=tracker)
    assert by_folder.kind == "classifier" and by_folder.run_id == trained["ft_run"]
    uri = tracker.run_tags(trained["ft_run"])[tracking.TAG + "model_uri"]
    assert uri.startswith(("models:/", "runs:/"))
    for ref in (trained["ft_run"], uri):
        other = load_model(ref, tracker=tracker)
        assert other.kind == "classifier" and other.run_id == trained["ft_run"]
        for (k, v), w in zip(by_folder.model.state_dict().items(),
                             other.model.state_dict().values()):
            assert torch.equal(v, w), k
    regressor = load_model(str(trained["qrs"]), tracker=tracker)
    assert regressor.kind == "regressor" and regressor.outputs == ["qrs"]
    # the test records of a model named by run id come from its logged predictions
    result = _explain(trained, tmp_path, model=trained["ft_run"], max_records=1,
                      methods=["grad_cam"], sanity=False, figures=False, log=False)
    test = pd.read_csv(trained["ft"] / "test_predictions.csv", dtype={"record_id": str})
    records = pd.read_csv(Path(result.output) / "records.csv", dtype={"record_id": str})
    assert set(records["record_id"]) == {test["record_id"][0]}


def test_a_cross_validation_explains_each_record_with_the_fold_that_held_it_out(trained,
                                                                               tmp_path):
    import shutil

    test = pd.read_csv(trained["ft"] / "test_predictions.csv", dtype={"record_id": str})
    cv = tmp_path / "cv"
    halves = {"fold1": test.iloc[:2], "fold2": test.iloc[2:4]}
    for fold, part in halves.items():  # two folds holding out different records
        shutil.copytree(trained["ft"], cv / fold)
        part.to_csv(cv / fold / "test_predictions.csv", index=False)
    (cv / "parent_run.json").write_text(json.dumps({"run_id": trained["ft_run"]}))
    result = _explain(trained, tmp_path, model=str(cv), methods=["grad_cam"], sanity=False,
                      figures=False, log=False, max_records=0)
    records = pd.read_csv(Path(result.output) / "records.csv", dtype={"record_id": str})
    owner = dict(zip(records["record_id"], records["model"]))
    assert set(owner) == set(test["record_id"][:4])
    for fold, part in halves.items():
        assert all(owner[i] == str(cv / fold) for i in part["record_id"])
    assert "2 cross-validation folds" in result.summary
    picked = _explain(trained, tmp_path, model=str(cv), methods=["grad_cam"], sanity=False,
                      figures=False, log=False, records=[test["record_id"][3]])
    chosen = pd.read_csv(Path(picked.output) / "records.csv", dtype={"record_id": str})
    assert list(chosen["model"]) == [str(cv / "fold2")] * len(chosen)
    with pytest.raises(ValueError, match="is in no fold's test records"):
        _explain(trained, tmp_path, model=str(cv), records=[test["record_id"][5]], log=False)


@pytest.mark.slow
def test_explain_is_a_pipeline_stage(trained, tmp_path):
    from ecgtransfer.pipeline import load_pipeline, run_pipeline

    text = f"""\
name: e
experiment: explain_pipeline
tracking_uri: {trained['uri']}
work: {tmp_path / 'work'}
stages:
  - name: ft
    stage: finetune
    store: {trained['store'].path}
    split: B
    strategy: single
    sources: [{trained['qrs']}]
    task: multi_label
    epochs: 1
    bootstrap: 0
  - name: why
    stage: explain
    model: ${{ft}}
    store: {trained['store'].path}
    max_records: 1
    methods: [grad_cam]
    ig_steps: 4
    random_orders: 1
"""
    path = tmp_path / "p.yaml"
    path.write_text(text)
    results = run_pipeline(load_pipeline(path), progress=False)
    why = next(r for r in results if r.name == "why")
    assert (Path(why.output) / "wave_share.csv").exists()
    assert len(list((Path(why.output) / "figures").glob("*.png"))) >= 1
    # the pipeline's stage run holds the outputs too, beside the fine-tune's own run
    import mlflow

    mlflow.set_tracking_uri(trained["uri"])
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("explain_pipeline")
    runs = client.search_runs([exp.experiment_id], "tags.`ecgtransfer.stage_kind` = 'explain'")
    assert runs and any(a.path == "wave_share.csv" for a in client.list_artifacts(runs[0].info.run_id))


def test_explain_replaces_only_its_own_output_folder(trained, tmp_path):
    """--out pointed by mistake at a store or a file: one line, and every byte stays; a folder
    explain wrote (with its marker, or an older one with explain.json only) is replaced."""
    store = tmp_path / "store"
    store.mkdir()
    files = {"store.json": b'{"source": "deepfake"}', "signals.i16": bytes(range(256)) * 40,
             "index.csv": b"record_id\n00001\n", "labels-abc.csv": b"record_id,qrs_ms\n1,90\n"}
    for name, data in files.items():
        (store / name).write_bytes(data)
    with pytest.raises(ValueError, match=r"--out .*store: holds files that `ecgtransfer "
                                         r"explain` did not write \(index.csv"):
        _explain(trained, tmp_path, out=str(store), max_records=1, log=False, figures=False)
    assert {p.name: p.read_bytes() for p in store.iterdir()} == files
    plain = tmp_path / "notes.txt"
    plain.write_text("keep me")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        _explain(trained, tmp_path, out=str(plain), max_records=1, log=False, figures=False)
    assert plain.read_text() == "keep me"
    assert not list(tmp_path.glob(".store.*")) and not list(tmp_path.glob(".notes.txt.*"))
    # another command's output is refused by name
    other = tmp_path / "compared"
    other.mkdir()
    (other / ".ecgtransfer-output").write_text('{"command": "compare"}')
    (other / "comparison.csv").write_text("x\n")
    with pytest.raises(ValueError, match="holds the output of `ecgtransfer compare`"):
        _explain(trained, tmp_path, out=str(other), max_records=1, log=False, figures=False)
    # explain's own folder, from before markers existed: replaced, and marked now
    old = tmp_path / "old"
    old.mkdir()
    (old / "explain.json").write_text("{}")
    (old / "records.csv").write_text("stale\n")
    done = _explain(trained, tmp_path, out=str(old), methods=["grad_cam"], max_records=1,
                    log=False, figures=False, sanity=False)
    assert done.output == str(old) and (old / ".ecgtransfer-output").is_file()
    assert "stale" not in (old / "records.csv").read_text()


def test_bad_explain_input_is_one_line(trained, cli, tmp_path):
    store = str(trained["store"].path)
    common = ["--tracking-uri", trained["uri"], "--store", store]
    (tmp_path / "header_only.csv").write_text("record_id\n")
    alone = tmp_path / "alone"  # a model.pt without its run folder: no test records to take
    alone.mkdir()
    shutil.copyfile(Path(trained["qrs"]) / "model.pt", alone / "model.pt")
    cases = [
        (["--model", str(trained["ft"]), "--records", "header_only.csv"],
         "header_only.csv: holds no record ids"),
        (["--model", str(trained["ft"]), "--records", "nope"], "--records: nope is not in"),
        (["--model", str(alone / "model.pt")], "--records test:"),
        (["--model", "missing/model.pt"], "--model missing/model.pt: not a model.pt"),
        (["--model", str(trained["ft"]), "--methods", "saliency"], "methods"),
        (["--model", str(trained["ft"]), "--max-records", "x"], "max_records"),
        (["--model", str(trained["store"].path / "store.json")], "refused to load it|neither"),
    ]
    for args, message in cases:
        done = cli("explain", *common, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert any(m in lines[0] for m in message.split("|")), lines[0]


def test_the_explain_study_pipeline_is_valid(tmp_path):
    """pipelines/explain_qrs.yaml checks out: the explain stages read the pretrain and finetune
    stages' outputs, the transfer's against scratch's explanation."""
    from ecgtransfer.pipeline import load_pipeline

    pipeline = load_pipeline(REPO / "pipelines" / "explain_qrs.yaml", [f"work={tmp_path / 'w'}"])
    kinds = [s.kind for s in pipeline.stages]
    assert kinds == ["prepare", "synth", "label", "pretrain", "finetune", "finetune", "explain",
                     "explain", "explain"]
    last = pipeline.stages[-1]
    assert last.settings["baseline"] == "${explain_scratch}"
    assert last.settings["model"] == "${transfer}"
