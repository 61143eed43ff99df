"""Trunk transfer: the classifier's trunk starts equal to the pretrained one, a frozen trunk stays
fixed while the head learns, ``combined`` holds every trunk, the classifier saves and loads, and
bad sources are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgtransfer.models import create_model
from ecgtransfer.models.regressor import IntervalRegressor, load_regressor, save_regressor
from ecgtransfer.models.classifier import (TransferClassifier, load_classifier, save_classifier,
                                          set_trunk_trainable)
from ecgtransfer.transfer import load_sources


def load_regressors(ref, tracker=None):
    from ecgtransfer.tracking import Tracker

    return [s.regressor for s in load_sources(ref, tracker=tracker or Tracker())]


def _regressor(path, seed, fs=100.0, model="resnet1d_fast"):
    torch.manual_seed(seed)
    net = create_model(model, num_outputs=1)
    meta = {"model": model, "model_kwargs": {}, "targets": ["qrs"], "units": ["ms"], "fs": fs,
            "n_samples": int(10 * fs), "leads": ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]}
    rng = np.random.default_rng(seed)
    save_regressor(IntervalRegressor(net, meta, rng.normal(0, 0.01, 8), rng.uniform(0.1, 0.3, 8),
                                     [95.0], [12.0]), path)
    return path


@pytest.fixture
def batch(ptbxl_store):
    from ecgtransfer.data.transforms import resample

    return torch.from_numpy(np.stack([resample(ptbxl_store[i], 500, 100) for i in range(8)]))


def test_trunk_equals_the_pretrained_trunk(tmp_path, batch):
    (tmp_path / "qrs").mkdir()
    path = _regressor(tmp_path / "qrs" / "model.pt", 0)
    (source,) = load_regressors(str(path))
    clf = TransferClassifier(load_regressors(str(tmp_path / "qrs")), num_outputs=5)  # its folder
    assert len(load_regressors(str(tmp_path))) == 1  # a pretrain run folder
    reference = load_regressor(path).eval()
    clf.eval()
    trunk = {k: v for k, v in clf.trunks[0].state_dict().items() if not k.startswith("net.head")}
    original = {k: v for k, v in source.state_dict().items() if not k.startswith("net.head")}
    assert trunk.keys() == original.keys()
    assert all(torch.equal(trunk[k], original[k]) for k in trunk)
    with torch.no_grad():
        assert torch.allclose(clf.forward_features(batch), reference.forward_features(batch))
        assert clf(batch).shape == (8, 5)


def test_frozen_trunk_stays_while_the_head_learns(tmp_path, batch):
    clf = TransferClassifier(load_regressors(str(_regressor(tmp_path / "a.pt", 0))), 5)
    clf.train()
    set_trunk_trainable(clf, False)
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    opt = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=1e-2)
    y = torch.arange(8) % 5
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf(batch), y).backward()
        opt.step()
    after = clf.state_dict()
    trunk_keys = [k for k in before if k.startswith("trunks.")]
    assert trunk_keys and all(torch.equal(before[k], after[k]) for k in trunk_keys)  # BN stats too
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))
    set_trunk_trainable(clf, True)
    assert all(p.requires_grad for p in clf.parameters())


def test_combined_holds_every_trunk(tmp_path, batch):
    paths = [_regressor(tmp_path / f"{t}.pt", i) for i, t in enumerate(["hr", "pr", "qrs", "qt"])]
    sources = [r for p in paths for r in load_regressors(str(p))]
    clf = TransferClassifier(sources, 5).eval()
    assert len(clf.trunks) == 4
    assert clf.num_features == sum(s.num_features for s in sources)
    with torch.no_grad():
        feats = clf.forward_features(batch)
        width = sources[0].num_features
        for i, p in enumerate(paths):
            alone = load_regressor(p).eval().forward_features(batch)
            assert torch.allclose(feats[:, i * width:(i + 1) * width], alone)


def test_bad_sources_are_named(tmp_path):
    a = load_regressors(str(_regressor(tmp_path / "a.pt", 0, fs=100.0)))
    b = load_regressors(str(_regressor(tmp_path / "b.pt", 1, fs=500.0)))
    with pytest.raises(ValueError, match="b.pt: fs 500.0 differs"):
        TransferClassifier(a + b, 5, names=["a.pt", "b.pt"])
    with pytest.raises(ValueError, match="not a model.pt"):
        load_regressors(str(tmp_path / "missing"))
    from ecgtransfer.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(ValueError, match="no such MLflow run"):
        load_regressors("0123456789abcdef0123456789abcdef", tracker)



def test_weights_of_another_architecture_are_named(tmp_path):
    path = _regressor(tmp_path / "a.pt", 0)
    from ecgtransfer.training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(path)
    state["meta"]["model_kwargs"] = {"width": 48}  # weights of width 32 under another meta
    save_checkpoint(state, tmp_path / "b.pt")
    with pytest.raises(ValueError, match=r"b.pt: the weights do not fit the architecture "
                                         r"resnet1d_fast \(.* is \(32, 8, 15\)"):
        load_regressors(str(tmp_path / "b.pt"))


def test_classifier_saves_and_loads(tmp_path, batch):
    paths = [_regressor(tmp_path / f"{t}.pt", i) for i, t in enumerate(["hr", "qrs"])]
    clf = TransferClassifier([r for p in paths for r in load_regressors(str(p))], 5,
                             head_hidden=16, head_dropout=0.1, meta={"classes": list("ABCDE")})
    torch.nn.init.normal_(clf.head[-1].weight)
    save_classifier(clf.eval(), tmp_path / "clf.pt")
    again = load_classifier(tmp_path / "clf.pt")
    assert again.meta["classes"] == list("ABCDE") and len(again.trunks) == 2
    with torch.no_grad():
        assert torch.allclose(again(batch), clf(batch))
    with pytest.raises(ValueError, match="not an ecgtransfer classifier"):
        load_classifier(paths[0])
