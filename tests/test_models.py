"""Every registered model and both wrappers (the interval regressor, the transfer classifier):
build, run forward and backward on real PTB-XL records, share one transfer interface, keep the
parameter names saved checkpoints hold, and take only known, well-typed ``model_kwargs``."""

from __future__ import annotations

import hashlib
import inspect

import numpy as np
import pytest
import torch

from ecgtransfer.models import DEFAULT_MODEL, create_model, list_models, model_defaults
from ecgtransfer.models.classifier import TransferClassifier, load_classifier, save_classifier
from ecgtransfer.models.regressor import IntervalRegressor

LEADS = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(scope="module")
def batch(ptbxl_store) -> torch.Tensor:
    """Two real records, their first 2 s (2, 8, 1000)."""
    x = np.stack([ptbxl_store[0], ptbxl_store[1]])[:, :, :1000]
    assert x.shape == (2, 8, 1000)
    return torch.from_numpy(np.ascontiguousarray(x))


def _regressor(model: str = DEFAULT_MODEL, num_outputs: int = 2, seed: int = 0) -> IntervalRegressor:
    """A regressor of ``num_outputs`` targets with non-trivial lead and target scaling."""
    torch.manual_seed(seed)
    net = create_model(model, in_channels=8, num_outputs=num_outputs)
    meta = {"model": model, "model_kwargs": {}, "targets": [f"t{i}" for i in range(num_outputs)],
            "units": ["ms"] * num_outputs, "fs": 500.0, "n_samples": 1000, "leads": LEADS}
    rng = np.random.default_rng(seed)
    return IntervalRegressor(net, meta, rng.normal(0, 0.01, 8), rng.uniform(0.1, 0.3, 8),
                             rng.uniform(50, 400, num_outputs), rng.uniform(5, 30, num_outputs))


def _classifier(num_outputs: int) -> TransferClassifier:
    trunks = [_regressor("resnet1d_fast", 1, seed=0), _regressor("cnn", 2, seed=1)]
    return TransferClassifier(trunks, num_outputs, head_hidden=16, head_dropout=0.1)


SMALL = {"resnet1d": {"width": 16}, "inception1d": {"filters": 8, "bottleneck": 8},
         "vit1d": {"embed_dim": 64}}
"""Narrower versions of the slower models, for the interface test (their defaults are built by
the tests of :func:`model_defaults` and of their sizes)."""

BUILDERS = {**{name: (lambda k, name=name: create_model(name, in_channels=8, num_outputs=k,
                                                        **SMALL.get(name, {})))
               for name in list_models()},
            "IntervalRegressor": lambda k: _regressor(num_outputs=k),
            "TransferClassifier": _classifier}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_transfer_interface(kind, batch):
    torch.manual_seed(0)
    model = BUILDERS[kind](3)
    model.train()
    features = model.forward_features(batch)
    assert features.shape == (2, model.num_features)
    out = model.forward_head(features)
    assert out.shape == (2, 3) and model.num_outputs == 3
    out.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    model.eval()
    trunk = {k: v.clone() for k, v in model.state_dict().items() if "head." not in k}
    with torch.no_grad():
        features = model.forward_features(batch)
        before = model(batch)
        assert torch.allclose(before, model.forward_head(features))
        model.reset_head(3)
        after = model(batch)
        assert after.shape == (2, 3) and not torch.allclose(after, before)  # a new head
        model.reset_head(5)
        assert model(batch).shape == (2, 5) and model.num_outputs == 5
        assert len(model.trunk_parameters()) + len(list(model.head.parameters())) == \
            len(list(model.parameters()))
        model.reset_head(0)  # no head: the features
        assert model.num_outputs == 0 and not list(model.head.parameters())
        assert torch.allclose(model(batch), features)
        assert len(model.trunk_parameters()) == len(list(model.parameters()))
    kept = {k: v for k, v in model.state_dict().items() if "head." not in k}
    if kind == "IntervalRegressor":  # a new head drops the trained target scaling
        trunk = {k: v for k, v in trunk.items() if not k.startswith("target_")}
        kept = {k: v for k, v in kept.items() if not k.startswith("target_")}
    assert trunk.keys() == kept.keys() and all(torch.equal(trunk[k], kept[k]) for k in trunk)


def test_interval_regressor_normalises_leads_and_destandardises_intervals(batch):
    reg = _regressor(num_outputs=2).eval()
    with torch.no_grad():
        z = (batch - reg.lead_mean) / reg.lead_std
        assert torch.allclose(reg.forward_features(batch), reg.net.forward_features(z))
        assert torch.allclose(reg(batch), reg.net(z) * reg.target_std + reg.target_mean)
        reg.reset_head(4)  # a new head: its outputs are no longer the trained intervals
        assert torch.allclose(reg(batch), reg.net(z))
        reg.reset_head(0)
        assert reg.target_mean.shape == (1, 4)


def test_classifier_drops_the_trunk_heads_and_keeps_its_head_in_meta(tmp_path, batch):
    clf = _classifier(5).eval()
    assert all(t.num_outputs == 0 for t in clf.trunks)
    with torch.no_grad():
        alone = [t.forward_features(batch) for t in clf.trunks]
        assert torch.allclose(clf.forward_features(batch), torch.cat(alone, dim=1))
        assert clf.num_features == sum(t.num_features for t in clf.trunks)
        clf.reset_head(4)
        assert clf.meta["num_outputs"] == 4
        save_classifier(clf, tmp_path / "clf.pt")
        assert torch.allclose(load_classifier(tmp_path / "clf.pt")(batch), clf(batch))


@pytest.mark.parametrize("name", list_models())
def test_model_defaults_are_complete_and_effective(name):
    torch.manual_seed(0)
    implicit = create_model(name)
    params = [k for k in inspect.signature(type(implicit)).parameters
              if k not in ("in_channels", "num_outputs")]
    defaults = model_defaults(name)
    assert list(defaults) == params
    torch.manual_seed(0)
    explicit = create_model(name, **defaults).state_dict()
    assert implicit.state_dict().keys() == explicit.keys()
    assert all(torch.equal(v, explicit[k]) for k, v in implicit.state_dict().items())


def test_model_defaults_merge_the_factory_into_its_class():
    fast = model_defaults("resnet1d_fast")
    assert fast["layers"] == (1, 1, 1) and fast["width"] == 32 and fast["stem_stride"] == 4
    assert fast["stem_kernel"] == 15  # the class's own default
    assert model_defaults("rnn")["cell"] == "rnn" and model_defaults("lstm")["cell"] == "lstm"


@pytest.mark.parametrize("name, key, value, message", [
    ("resnet1d", "width", "abc", "model_kwargs.width: expected an integer, got 'abc'"),
    ("resnet1d", "width", True, "model_kwargs.width: expected an integer, got True"),
    ("resnet1d", "width", 32.5, "model_kwargs.width: expected an integer, got 32.5"),
    ("resnet1d", "layers", [1, "x"], "model_kwargs.layers: expected a list of integers"),
    ("resnet1d", "layers", 2, "model_kwargs.layers: expected a list of integers, got 2"),
    ("vit1d", "mlp_ratio", "2", "model_kwargs.mlp_ratio: expected a number, got '2'"),
    ("lstm", "bidirectional", 1, "model_kwargs.bidirectional: expected a boolean, got 1"),
    ("rnn", "cell", 3, "model_kwargs.cell: expected a string, got 3"),
    ("cnn", "head_hidden", "big", "model_kwargs.head_hidden: expected an integer"),
    ("resnet1d", "widht", 3, "model_kwargs.widht: not a parameter of 'resnet1d'"),
])
def test_wrong_kinds_and_unknown_keys_are_refused_in_one_line(name, key, value, message):
    with pytest.raises(ValueError) as err:
        create_model(name, **{key: value})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_right_kinds_are_taken():
    model = create_model("resnet1d", layers=[1, 1], width=16, kernel_size=3,  # a YAML list
                         head_hidden=None, head_dropout=0)  # optional int; an int for a float
    assert len(model.stages) == 2 and model.num_features == 2 * 32
    assert model.stages[0][0].conv1.kernel_size == (3,)
    assert create_model("vit1d", head_hidden=8, embed_dim=32, depth=1).num_features == 32
    with pytest.raises(ValueError, match="unknown model 'resnet99'"):
        create_model("resnet99")
    assert DEFAULT_MODEL in list_models()


def _fingerprint(module: torch.nn.Module) -> tuple[str, int]:
    lines = [f"{k}:{tuple(v.shape)}" for k, v in module.state_dict().items()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16], len(lines)


# state_dict names and shapes, in order, as the code before the timm-style factories (commit
# 4febf2f) made them: each model with 8 leads and 3 outputs, an IntervalRegressor of it with 2,
# and a classifier of a resnet1d_fast and a cnn trunk under a 16-wide head of 5 outputs.
# A change here breaks every saved model.pt.
SAVED = {
    "cnn": ("eea7105cf8a2f4f2", 44), "regressor:cnn": ("59363a3183790d7b", 48),
    "inception1d": ("3d7097cfda1f0181", 86), "regressor:inception1d": ("e09e8cc795bd2618", 90),
    "lstm": ("bab621d67e54b96e", 10), "regressor:lstm": ("4f7bbad2d5715749", 14),
    "resnet1d": ("3f7d27f184fc9a4d", 122), "regressor:resnet1d": ("d5fb75fad6fd1e2d", 126),
    "resnet1d_fast": ("c2c8194b50e74ecf", 68), "regressor:resnet1d_fast": ("df040c1c2ef3237a", 72),
    "rnn": ("0a2634adb880e504", 10), "regressor:rnn": ("d90fda07153731a5", 14),
    "vit1d": ("979a3b33327e1aa6", 55), "regressor:vit1d": ("f88e66c03fa0a951", 59),
    "classifier": ("d0d903b860fb9ed9", 106),
}


@pytest.mark.parametrize("name", list_models())
def test_parameter_names_of_saved_checkpoints_are_unchanged(name):
    assert _fingerprint(create_model(name, in_channels=8, num_outputs=3)) == SAVED[name]
    assert _fingerprint(_regressor(name, 2)) == SAVED[f"regressor:{name}"]


def test_classifier_parameter_names_are_unchanged():
    clf = TransferClassifier([_regressor("resnet1d_fast", 2, 0), _regressor("cnn", 2, 1)], 5,
                             head_hidden=16, head_dropout=0.1)
    assert _fingerprint(clf) == SAVED["classifier"]


def test_inception1d_is_the_study_network():
    model = create_model("inception1d", num_outputs=1)
    assert len(model.blocks) == 6
    assert sorted(model.shortcuts) == ["2", "5"]  # a shortcut every 3 blocks
    block = model.blocks[1]
    assert [c.kernel_size[0] for c in block.convs] == [39, 19, 9]
    assert all(c.in_channels == 32 and c.out_channels == 32 for c in block.convs)
    assert model.num_features == 256  # concat pooling of 128 channels
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 128), (128, 1)]


def test_vit1d_default_size():
    model = create_model("vit1d")
    layer = model.encoder.layers[0]
    assert model.num_features == 384
    assert len(model.encoder.layers) == 4
    assert layer.self_attn.num_heads == 4
    assert layer.linear1.out_features == 384  # MLP ratio 1
