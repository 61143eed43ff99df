"""``ecgtransfer score``: pretrained regressors measured on real records per stratum, against the
labeller's labels (PTB-XL) or LUDB's cardiologists' marks; the seed-and-record bootstrap of
:mod:`ecgtransfer.comparison.strata`; one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import run_stage
from ecgtransfer.comparison.strata import parse_stratum, stratum_table
from ecgtransfer.config import ConfigError
from ecgtransfer.stages.pretrain import PretrainConfig
from ecgtransfer.stages.score import ScoreConfig

LUDB_RECORDS = [str(i) for i in range(1, 25)]


@pytest.fixture(scope="module")
def regressors(deepfake_labelled, tmp_path_factory):
    """Two seeds of a multi-output HR/PR/QRS/QT regressor, briefly pretrained on DeepFake."""
    folder = tmp_path_factory.mktemp("score")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    for seed in (0, 1):
        run_stage("pretrain", PretrainConfig(
            store=str(deepfake_labelled.path), targets=["hr", "pr", "qrs", "qt"],
            multi_output=True, fs=100.0, epochs=1, batch_size=16, device="cpu", seed=seed,
            out=str(folder / f"pre{seed}"), tracking_uri=uri, experiment="pre"))
    return {"uri": uri, "folder": folder, "refs": [str(folder / f"pre{s}") for s in (0, 1)]}


@pytest.fixture(scope="module")
def ludb_store(ludb_root, tmp_path_factory):
    """24 LUDB records as a store (8 leads, 500 Hz)."""
    from conftest import copy_records
    from ecgtransfer.data.ingest import prepare_wfdb
    from ecgtransfer.data.store import SignalStore

    folder = tmp_path_factory.mktemp("ludb")
    records = copy_records(ludb_root / "data", LUDB_RECORDS, folder / "records")
    prepare_wfdb(records, folder / "store", progress=False)
    return SignalStore(folder / "store"), records


def test_strata_parse_and_refuse():
    assert parse_stratum("QRS >= 120").name == "qrs>=120"
    assert parse_stratum("all").interval == ""
    s = parse_stratum("hr<55")
    truth = pd.DataFrame({"hr_bpm": [50.0, 55.0, np.nan, 80.0]})
    assert s.mask(truth).tolist() == [True, False, False, False]
    for bad in ("qrs=>120", "width>3", "qrs>", "qrs>>1"):
        with pytest.raises(ValueError, match="is not a stratum"):
            parse_stratum(bad)


def test_stratum_table_pairs_models_on_the_same_draws():
    rng = np.random.default_rng(0)
    truth = pd.DataFrame({"qrs_ms": rng.uniform(70, 160, 300)})
    noise = rng.normal(0, 8, 300)
    base = [pd.DataFrame({"qrs_ms": truth["qrs_ms"] + 30 + noise}) for _ in range(2)]
    better = [pd.DataFrame({"qrs_ms": truth["qrs_ms"] + 20 + noise}) for _ in range(2)]
    table = stratum_table(truth, {"a": base, "b": better}, [parse_stratum("all"),
                                                           parse_stratum("qrs>=120")],
                          ["qrs"], baseline="a", n_resamples=200, seed=1)
    rows = table.set_index(["model", "stratum"])
    wide = (truth["qrs_ms"] >= 120).sum()
    assert rows.loc[("a", "qrs>=120"), "n_records"] == wide
    expect = np.abs(30 + noise).mean()
    assert rows.loc[("a", "all"), "mae"] == pytest.approx(expect)
    assert rows.loc[("a", "all"), "mae_low"] < expect < rows.loc[("a", "all"), "mae_high"]
    b = rows.loc[("b", "all")]
    assert b["delta"] == pytest.approx(np.abs(20 + noise).mean() - expect)
    # the same draws for both: the difference's interval is far narrower than either MAE's
    assert b["delta_high"] - b["delta_low"] < 0.5 * (b["mae_high"] - b["mae_low"])
    assert b["delta_high"] < 0 and b["better"] == 1.0
    assert np.isnan(rows.loc[("a", "all"), "delta"])
    with pytest.raises(ValueError, match="same number of seeds"):
        stratum_table(truth, {"a": base, "b": better[:1]}, [parse_stratum("all")], ["qrs"],
                      baseline="a")


def test_score_against_ludb_cardiologists(regressors, ludb_store, tmp_path):
    import mlflow

    from ecgtransfer.features.reference import ludb_reference

    store, records = ludb_store
    a, b = regressors["refs"]
    config = ScoreConfig(models=[f"df={a}", f"df={b}", f"again={b}", f"again={a}"],
                         store=str(store.path), reference=str(records), bootstrap=50,
                         out=str(tmp_path / "out"), tracking_uri=regressors["uri"],
                         experiment="score")
    result = run_stage("score", config)
    table = pd.read_csv(tmp_path / "out" / "scores.csv")
    preds = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype={"record_id": str})
    ref = ludb_reference(records, LUDB_RECORDS)
    assert set(preds["record_id"]) == set(LUDB_RECORDS)
    got = preds.set_index("record_id")["true_qrs_ms"]
    assert np.allclose(got.loc[ref.index], ref["qrs_ms"], equal_nan=True)
    # the MAE is the mean over seeds of each seed's MAE on the stratum's records
    wide = preds[preds["true_qrs_ms"] >= 120]
    want = np.mean([np.abs(wide[f"df#{i}_qrs_ms"] - wide["true_qrs_ms"]).mean() for i in (1, 2)])
    row = table[(table["model"] == "df") & (table["target"] == "qrs")
                & (table["stratum"] == "qrs>=120")].iloc[0]
    assert row["n_records"] == len(wide) and row["n_seeds"] == 2
    assert row["mae"] == pytest.approx(want, rel=1e-6)
    # the same regressors in another order: no difference, on every stratum
    again = table[table["model"] == "again"]
    assert np.allclose(again["delta"].dropna(), 0, atol=1e-9)
    assert (tmp_path / "out" / "scores.png").stat().st_size > 10_000
    mlflow.set_tracking_uri(regressors["uri"])
    run = mlflow.MlflowClient().get_run(result.run_ids[0])
    assert run.data.tags["ecgtransfer.truth"].startswith("ludb:")
    assert run.data.tags["ecgtransfer.stage"] == "score"
    assert run.info.run_name == "score 2 models on wfdb against LUDB's cardiologists"
    assert run.data.metrics["mae_qrs_ms.qrs_ge_120.df"] == pytest.approx(want, rel=1e-6)
    assert "seed" in run.data.params


def test_score_against_labels_and_refusals(regressors, ptbxl_labelled, tmp_path, cli):
    a, b = regressors["refs"]
    out = tmp_path / "out"
    config = ScoreConfig(models=[f"x={a}", f"y={b}"], store=str(ptbxl_labelled.path),
                         strata=["all", "pr>200"], bootstrap=50, out=str(out),
                         tracking_uri=regressors["uri"])
    run_stage("score", config)
    table = pd.read_csv(out / "scores.csv")
    labels = next(ptbxl_labelled.path.glob("labels-*.csv"))
    truth = pd.read_csv(labels)
    long_pr = ((truth["pr_ms"] > 200) & (truth["pr_status"] == "ok")).sum()
    row = table[(table["model"] == "x") & (table["target"] == "pr")
                & (table["stratum"] == "pr>200")].iloc[0]
    assert abs(row["n_records"] - long_pr) <= 2  # implausible values are left out
    assert row["n_records"] > 5

    uri = regressors["uri"]
    cases = [
        (["--models", f"x={a}", "--models", f"x={b}", "--models", f"y={a}"],
         "same number of seeds"),
        (["--models", a], "write NAME=REF"),
        (["--models", f"x={a}", "--strata", "qrs=>120"], "is not a stratum"),
        (["--models", f"x={a}", "--labels", str(labels), "--reference", str(tmp_path)],
         "not both"),
        (["--models", f"x={tmp_path}"], "--models"),
        (["--models", f"x={a}", "--baseline", "z"], "none of the models"),
    ]
    for extra, message in cases:
        done = cli("score", *extra, "--store", str(ptbxl_labelled.path), "--tracking-uri", uri,
                   "--out", str(tmp_path / "bad"))
        assert done.returncode != 0, extra
        lines = [x for x in done.stderr.strip().splitlines() if x]
        assert len(lines) == 1 and message in lines[0], (extra, done.stderr)
        assert "Traceback" not in done.stderr
    with pytest.raises(ConfigError, match="models"):
        ScoreConfig(models=[], store="x")
    # a folder holding something else (the store itself) is never written into
    before = sorted(p.name for p in ptbxl_labelled.path.iterdir())
    done = cli("score", "--models", f"x={a}", "--store", str(ptbxl_labelled.path),
               "--tracking-uri", uri, "--out", str(ptbxl_labelled.path))
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in ptbxl_labelled.path.iterdir()) == before
