"""Settings: each checked by name and type, from flags, TOML files and checkpoints alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from convprop.training import ConfigError, TrainConfig, load_config_file


@pytest.mark.parametrize(
    ("values", "key", "rule"),
    [
        ({"lr": "fast"}, "lr", "must be a positive finite number, got 'fast' (a string)"),
        ({"lr": float("inf")}, "lr", "must be a positive finite number, got inf (a number)"),
        ({"lr": 0}, "lr", "must be a positive finite number, got 0.0 (a number)"),
        ({"epochs": 2.0}, "epochs", "must be a positive integer, got 2.0 (a number)"),
        ({"batch_size": True}, "batch_size", "must be a positive integer, got True (a boolean)"),
        ({"seed": -1}, "seed", "must be an integer >= 0, got -1 (an integer)"),
        ({"limit": 5}, "limit", "must be an integer >= 20, got 5 (an integer)"),
        ({"augment": 5}, "augment", "must be a list of augmentation names or a comma-separated"),
        ({"augment": ["flip"]}, "augment", "names unknown augmentation(s) flip"),
        ({"augment": [1]}, "augment", "must be a list of augmentation names"),
        ({"data": ""}, "data", "must name a bundled data set or a path, got an empty string"),
        ({"data": 3}, "data", "must name a bundled data set or a path, got 3 (an integer)"),
        ({"model": "vgg"}, "model", "must be one of lenet5, resnet20"),
        ({"dtype": "float16"}, "dtype", "must be one of float32, float64, got 'float16'"),
        ({"test_fraction": 1}, "test_fraction", "must be a number in (0, 1), got 1"),
        ({"momentum": float("nan")}, "momentum", "must be a non-negative finite number, got nan"),
        ({"resize": [28]}, "resize", "must be two positive integers HEIGHT, WIDTH, got [28]"),
        ({"num_classes": 1}, "num_classes", "must be an integer >= 2, got 1"),
        ({"sync_bn": "yes"}, "sync_bn", "must be true or false, got 'yes' (a string)"),
        ({"colour": 1, "size": 2}, "colour, size", "are not settings (the settings are: augment"),
    ],
)
def test_each_bad_value_names_its_setting(values: dict, key: str, rule: str) -> None:
    with pytest.raises(ConfigError) as raised:
        TrainConfig.from_dict(values)
    assert raised.value.key == key
    assert raised.value.rule.startswith(rule), raised.value.rule
    assert str(raised.value) == f"{key} {raised.value.rule}"


def test_toml_spellings_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('batch-size = 32\nlr = 1\naugment = "shift, none"\ntest_fraction = 0.25\n')
    config = TrainConfig.from_dict(load_config_file(path))
    assert config.batch_size == 32 and config.lr == 1.0 and isinstance(config.lr, float)
    assert config.augment == ["shift"] and config.test_fraction == 0.25


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file .*nowhere.toml does not exist"):
        load_config_file(tmp_path / "nowhere.toml")
    (tmp_path / "bad.toml").write_text("epochs = \n")
    with pytest.raises(ConfigError, match="is not a readable TOML file"):
        load_config_file(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config_file(tmp_path)


def test_round_trip_through_a_dict() -> None:
    config = TrainConfig(model="resnet20", lr=0.1, augment=["all"], num_classes=12)
    assert TrainConfig.from_dict(config.to_dict()) == config
