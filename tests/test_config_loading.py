"""Experiment files and `--config.` overrides (c2s_jax/config_loading.py)."""

import ml_collections
import pytest

from c2s_jax.config_loading import load_config
from c2s_jax.errors import InputError
from tests.support.training import TINY


def test_overrides_are_typed_and_name_the_key():
    cfg = load_config(
        TINY, ["train.steps=7", "optimizer.learning_rate=1", "model.name=pythia_tiny"]
    )
    assert (cfg.train.steps, cfg.optimizer.learning_rate, cfg.model.name) == (7, 1.0, "pythia_tiny")
    assert isinstance(cfg.optimizer.learning_rate, float)
    with pytest.raises(InputError, match="no key 'train.stepz'"):
        load_config(TINY, ["train.stepz=7"])
    with pytest.raises(InputError, match="train.steps=many: expected int"):
        load_config(TINY, ["train.steps=many"])
    with pytest.raises(InputError, match="no such config file"):
        load_config("missing.py")


def test_quoted_and_bare_strings_agree_and_containers_take_whole_literals():
    quoted = load_config(TINY, ["data.corpus_dir='runs/x y'"])
    bare = load_config(TINY, ["data.corpus_dir=runs/x y"])
    assert quoted.data.corpus_dir == bare.data.corpus_dir == "runs/x y"
    cfg = load_config(
        TINY,
        ["data.task_weights={'cell_type_annotation': 2, 'x': 0.5}", "lora.targets=['wq']"],
    )
    assert isinstance(cfg.data.task_weights, ml_collections.ConfigDict)
    assert dict(cfg.data.task_weights) == {"cell_type_annotation": 2, "x": 0.5}
    assert cfg.lora.targets == ("wq",)
    with pytest.raises(InputError, match="must look like --config.train.steps=VALUE"):
        load_config(TINY, ["train.steps"])


def test_a_broken_experiment_file_is_named(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module\n")
    with pytest.raises(InputError, match="broken.py: cannot be imported"):
        load_config(broken)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(InputError, match="empty.py: defines no get_config"):
        load_config(empty)
    failing = tmp_path / "failing.py"
    failing.write_text("def get_config():\n    raise ValueError('no')\n")
    with pytest.raises(InputError, match=r"failing.py: get_config\(\) failed \(ValueError: no\)"):
        load_config(failing)
