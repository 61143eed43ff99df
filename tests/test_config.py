"""Configs: defaults < YAML file < flags < --set overrides; unknown keys and wrong types are
named."""

from __future__ import annotations

import pytest

from ecgtransfer.config import ConfigError, PretrainConfig, load_config, to_yaml


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
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(PretrainConfig, None, ["epochs"])
