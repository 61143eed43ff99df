"""Every registered model: builds, runs forward and backward on a (2, 8, 5000) batch of real
PTB-XL records, exposes the transfer interface, and has the size its docs give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgtransfer.models import DEFAULT_MODEL, create_model, list_models, model_defaults


@pytest.fixture(scope="module")
def batch(ptbxl_store) -> torch.Tensor:
    x = np.stack([ptbxl_store[0], ptbxl_store[1]])
    assert x.shape == (2, 8, 5000)
    return torch.from_numpy(x)


@pytest.mark.parametrize("name", list_models())
def test_model_forward_backward_and_transfer_interface(name, batch):
    torch.manual_seed(0)
    model = create_model(name, in_channels=8, num_outputs=3)
    model.train()
    features = model.forward_features(batch)
    assert features.shape == (2, model.num_features)
    out = model.forward_head(features)
    assert out.shape == (2, 3)
    out.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    trunk = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    model.reset_head(5)
    model.eval()
    with torch.no_grad():
        assert model(batch).shape == (2, 5)
    after = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    assert trunk.keys() == after.keys()
    assert all(torch.equal(trunk[k], after[k]) for k in trunk)
    assert len(model.trunk_parameters()) + len(list(model.head.parameters())) == \
        len(list(model.parameters()))


def test_inception1d_is_the_study_network(batch):
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


def test_resnet1d_parameters_shape_the_network():
    small = create_model("resnet1d", layers=(1, 1), width=16, kernel_size=3)
    assert len(small.stages) == 2
    assert small.num_features == 2 * 32
    assert small.stages[0][0].conv1.kernel_size == (3,)
    assert DEFAULT_MODEL in list_models()


def test_unknown_model_and_parameter_are_named():
    with pytest.raises(ValueError, match="unknown model 'resnet99'"):
        create_model("resnet99")
    with pytest.raises(ValueError, match="model_kwargs.widht"):
        create_model("resnet1d", widht=3)
    assert "width" in model_defaults("resnet1d")
