"""Every shipped experiment recipe parses, names its exact command in its header, and plans.

(The training recipes in configs/train/cpu and configs/train/gpu are checked in test_train.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tracekd.config import load_config
from tracekd.experiment.config import load_experiment
from tracekd.experiment.plan import make_plan
from tracekd.generate import GenerateConfig
from tracekd.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(ROOT.glob("configs/experiments/*.yaml")) + sorted(ROOT.glob("configs/experiments/*/*.yaml")) \
    + [ROOT / "src/tracekd/configs/demo.yaml"]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_experiment_recipes(path):
    assert path.read_text().startswith("# tracekd "), "the header must be the exact command"
    config = load_experiment(path)
    load_config(TrainConfig, {"train_file": "x", "output_dir": "y", **config.stage_settings("train")})
    load_config(GenerateConfig, {"input_file": "x", "output_file": "y", **config.stage_settings("generate")})
    assert make_plan(config)



@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_recorded_config_reloads_with_the_same_stage_keys(path):
    """RUN/plan.json records `train:` / `generate:` as written; workers reload it and get the same stages."""
    import json

    from tracekd.config import read_yaml
    from tracekd.experiment.config import ExperimentConfig

    config = load_experiment(path)
    recorded = json.loads(json.dumps(config.to_dict()))
    assert recorded["train"] == read_yaml(path).get("train", {})
    assert recorded["generate"] == read_yaml(path).get("generate", {})
    again = load_config(ExperimentConfig, recorded)
    assert [s.key for s in make_plan(again)] == [s.key for s in make_plan(config)]



def test_cell_keys_are_refused_in_any_form():
    """student, seed and adapter come from each cell, flat or under their section's name."""
    from tracekd.errors import ConfigError
    from tracekd.experiment.config import ExperimentConfig

    base = load_experiment(EXPERIMENTS[0]).to_dict()
    for section, key, value in (("train", "model", {"student": "tiny-random"}), ("train", "seed", 1),
                                ("generate", "adapter", "x"), ("generate", "decoding", {"seed": 2})):
        with pytest.raises(ConfigError, match=f"{section}.(student|seed|adapter): set by the experiment"):
            load_config(ExperimentConfig, {**base, section: {key: value}})
