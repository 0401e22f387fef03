"""Help texts agree with behaviour; options, arms, templates and scorers are discoverable."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex

import pytest
import yaml

from tracekd.cli import main
from tracekd.commands import build as build_command
from tracekd.config import (
    add_command_arguments,
    config_from_args,
    load_config,
    settings_of,
)
from tracekd.datasets import DATASETS
from tracekd.generate.config import GenerateConfig
from tracekd.score.answer import scorer_names
from tracekd.score.steps import TRACE_DEFINITIONS
from tracekd.students import BUILTINS
from tracekd.traces.corrupt import ALL_ARMS
from tracekd.traces.templates import template_names


def _help_of(cls: type, name: str) -> str:
    return settings_of(cls)[name].field.metadata["help"]


def _train_config():
    from tracekd.train.config import TrainConfig

    return TrainConfig


@pytest.mark.parametrize("cls", [_train_config(), GenerateConfig], ids=["train", "generate"])
def test_chat_template_kwargs_help_examples_work(cls, tmp_path):
    text = _help_of(cls, "chat_template_kwargs")
    flag = re.search(r"\((--chat-template-kwargs '[^']+')", text)
    in_yaml = re.search(r"\((chat_template_kwargs: \{[^}]+\})\)", text)
    assert flag and in_yaml, text
    required = {name: "x.jsonl" for name, s in settings_of(cls).items()
                if s.field.default is dataclasses.MISSING and s.field.default_factory is dataclasses.MISSING}
    parser = argparse.ArgumentParser()
    add_command_arguments(parser, cls)
    argv = [a for k, v in required.items() for a in ("--" + k.replace("_", "-"), v)]
    from_flag = config_from_args(parser.parse_args(argv + shlex.split(flag.group(1))), cls)
    config = tmp_path / "c.yaml"
    config.write_text(in_yaml.group(1) + "\n")
    from_yaml = load_config(cls, str(config), required)
    assert from_flag.chat_template_kwargs == from_yaml.chat_template_kwargs == yaml.safe_load(in_yaml.group(1))[
        "chat_template_kwargs"]
    assert from_flag.chat_template_kwargs  # not empty: the example sets something


def test_ls_lists_every_option_arm_template_scorer_trace_definition_and_student(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in DATASETS.names():
        for f in dataclasses.fields(DATASETS.get(name).options):
            line = next((x for x in out.splitlines() if x.strip().startswith(f"{f.name} (")), None)
            assert line and "default " in line and f.metadata["help"] in line, (name, f.name)
    lines = out.splitlines()
    for item in (*ALL_ARMS, *template_names(), *scorer_names(), *TRACE_DEFINITIONS, *BUILTINS):
        line = next((x for x in lines if x.split() and x.split()[0] == item), None)
        assert line and len(line.split()) > 2, item  # a name and a description on one line


def test_ls_one_dataset(capsys):
    assert main(["ls", "babi"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("babi: ") and "cotemp" not in out and "arms:" not in out
    assert "    tasks (list of str, default qa1,qa2,qa4,qa7,qa8,qa12,qa14,qa15,qa16,qa17,qa18): " in out
    assert main(["ls", "babl"]) == 1
    assert "did you mean 'babi'" in capsys.readouterr().err


def test_build_help_examples_use_options_of_their_dataset():
    examples = [line for line in (build_command.__doc__ or "").replace("\\\n", " ").splitlines()
                if line.strip().startswith("tracekd build")]
    assert len(examples) >= 3
    seen = set()
    for line in examples:
        argv = shlex.split(line)
        dataset = argv[argv.index("--dataset") + 1]
        fields = {f.name for f in dataclasses.fields(DATASETS.get(dataset).options)}
        for i, a in enumerate(argv):
            if a == "--option":
                key = argv[i + 1].split("=")[0].replace("-", "_")
                assert key in fields, (dataset, key)
                seen.add(dataset)
    assert seen == {"babi", "cotemp", "marco"}
