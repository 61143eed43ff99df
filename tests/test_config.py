"""Configs: defaults < YAML file < flags < --set overrides; unknown keys and wrong types are
named."""

from __future__ import annotations

import pytest

from ecgtransfer.config import ConfigError, load_config, to_yaml
from ecgtransfer.stages.pretrain import PretrainConfig
from ecgtransfer.stages.finetune import FinetuneConfig


def test_precedence_file_flags_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("store: a\nepochs: 5\nlr: 0.01\nmodel_kwargs: {width: 16}\n")
    config = load_config(PretrainConfig, path, ["lr=0.002", "model_kwargs.kernel_size=3"],
                         epochs=7, store=None)
    assert config.store == "a"            # from the file
    assert config.epochs == 7             # a flag beats the file
    assert config.lr == 0.002             # --set beats both
    assert config.model_kwargs == {"width": 16, "kernel_size": 3}
    assert config.batch_size == PretrainConfig().batch_size
    again = tmp_path / "again.yaml"
    again.write_text(to_yaml(config))
    assert load_config(PretrainConfig, again) == config


@pytest.mark.parametrize("text, message", [
    ("store: a\nepoch: 3\n", "unknown key 'epoch'"),
    ("store: a\nepochs: three\n", "epochs: expected an integer"),
    ("store: a\ntargets: [qrs, st]\n", "unknown target 'st'"),
    ("store: a\nscheduler: step\n", "scheduler: cosine, plateau or constant"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_bad_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(PretrainConfig, path)
    assert str(info.value).startswith(str(path))


def test_bad_override_is_named():
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        load_config(PretrainConfig, None, ["epoch=3"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(PretrainConfig, None, ["epochs"])


def test_finetune_config_round_trips_and_takes_a_source_list(tmp_path):
    config = load_config(FinetuneConfig, None, ["head_hidden=null", "train_fraction=0.1"],
                         sources="runs/pretrain/qrs, runs/pretrain/hr", strategy="combined")
    assert config.sources == ["runs/pretrain/qrs", "runs/pretrain/hr"]
    assert config.head_hidden is None and config.train_fraction == 0.1
    path = tmp_path / "f.yaml"
    path.write_text(to_yaml(config))
    assert load_config(FinetuneConfig, path) == config


@pytest.mark.parametrize("values, message", [
    ({"strategy": "single"}, "sources: strategy single needs pretrained trunks"),
    ({"strategy": "mixed", "sources": ["a"]}, "strategy: 'mixed' is not single"),
    ({"sources": ["a"], "freeze": "gradual", "frozen_epochs": 30}, "frozen_epochs: gradual needs"),
    ({"sources": ["a"], "train_fraction": 0.0}, "train_fraction: must be in (0, 1]"),
    ({"sources": ["a"], "task": "multilabel"}, "task: 'multilabel' is not"),
    ({"strategy": "scratch", "class_weights": "inverse"}, "class_weights: 'inverse'"),
])
def test_bad_finetune_settings_are_named(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FinetuneConfig(**values)
