"""Config files: every verb's YAML goes through visiontune._config, whose errors name the file,
the line, the dotted key and the keys that section allows."""

import pytest

from visiontune.adapt import TrainConfig
from visiontune.detect.compose import parse_config
from visiontune.errors import ConfigError
from visiontune.pipeline import load_config


def test_unknown_key_in_a_nested_section_lists_that_sections_keys(tmp_path):
    cfg = tmp_path / "det.yaml"
    cfg.write_text("detector:\n  backbone: {model: 'timm:resnet18'}\n  anchors: {sizez: [32]}\n")
    with pytest.raises(ConfigError) as e:
        parse_config(cfg)
    msg = str(e.value)
    assert str(cfg) in msg and "anchors.sizez: unknown key; allowed keys:" in msg
    assert "backbone" not in msg.split("allowed keys:")[1]  # the section's keys, not the top level's


def test_yaml_syntax_error_names_the_line_for_every_loader(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  model: timm:resnet18\n  data: [unclosed\n")
    for loader in (TrainConfig.from_yaml, load_config, parse_config):
        with pytest.raises(ConfigError, match=r"bad.yaml line \d+: not valid YAML"):
            loader(bad)


def test_missing_file_and_wrong_shape(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        TrainConfig.from_dict(["model", "data"])
    with pytest.raises(ConfigError, match=r"  model: required key is missing"):
        TrainConfig.from_dict({"data": "d"})
