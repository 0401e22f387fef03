"""The teacher's prompts as data (``templates/teacher.yaml``, overridable) and the messages built from them.

>>> from tracekd.records import Decomposition, Example
>>> ex = Example("b/1", "babi", "test", "Where is Mary?", ("Mary went home.",), ("home",), Decomposition("qa1", (0,)))
>>> p = load_prompts()
>>> question_messages(ex, p)
[{'role': 'user', 'content': 'Answer the question based on the context:\\nMary went home.\\nQuestion: Where is Mary? Only return the answer.'}]
>>> summary_messages("I think.", p)[1]["content"].endswith("Reasoning:\\nI think.")
True
>>> [m["role"] for m in explanation_messages(question_messages(ex, p), "home", p)]
['user', 'assistant', 'user']
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, did_you_mean
from ..records import Example, Message
from ..traces.templates import Template, render_completion, render_prompt

#: section -> {key: (type, placeholders the string must hold)}
_SCHEMA: dict[str, dict[str, tuple[Any, tuple[str, ...]]]] = {
    "question": {"system": ((str, type(None)), ()), "user": (str, ("context", "question"))},
    "summary": {"system": ((str, type(None)), ()), "user": (str, ("trace",)), "temperature": ((int, float), ())},
    "explanation": {"user": (str, ())},
    "zero_shot_format": {"system": ((str, type(None)), ()),
                         "user": (str, ("example_prompt", "example_completion", "prompt"))},
}


@dataclass(frozen=True)
class TeacherPrompts:
    """Every prompt of the teacher stages, and the class synonyms of the free-form measures."""

    sections: dict = field(compare=True)  # section -> {key: value}, as in teacher.yaml
    class_synonyms: dict = field(default_factory=dict)  # label -> [other names]
    source: str = "tracekd/templates/teacher.yaml"

    def get(self, section: str, key: str) -> Any:
        return self.sections[section][key]

    def to_dict(self) -> dict:
        return {**self.sections, "class_synonyms": self.class_synonyms}


def _read(text: str, source: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping of sections ({', '.join(_SCHEMA)}, class_synonyms)")
    return data


def _merge(base: dict, data: dict, source: str) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in data.items():
        if section == "class_synonyms":
            if not isinstance(values, dict) or not all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                                                       for v in values.values()):
                raise ConfigError(f"{source}: class_synonyms must map each label to a list of strings")
            out["class_synonyms"] = {**out.get("class_synonyms", {}), **{str(k): list(v) for k, v in values.items()}}
            continue
        if section not in _SCHEMA:
            raise ConfigError(f"{source}: " + did_you_mean(str(section), [*_SCHEMA, "class_synonyms"], "section"))
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping")
        for key, value in values.items():
            if key not in _SCHEMA[section]:
                raise ConfigError(f"{source}: {section}: " + did_you_mean(str(key), _SCHEMA[section], "key"))
            types, needs = _SCHEMA[section][key]
            if not isinstance(value, types) or isinstance(value, bool):
                raise ConfigError(f"{source}: {section}.{key}: wrong type {type(value).__name__}")
            for name in needs:
                if "{" + name + "}" not in value:
                    raise ConfigError(f"{source}: {section}.{key}: must contain {{{name}}}")
            out.setdefault(section, {})[key] = value
    return out


@functools.lru_cache(maxsize=None)
def _packaged() -> dict:
    source = "tracekd/templates/teacher.yaml"
    text = resources.files("tracekd").joinpath("templates", "teacher.yaml").read_text(encoding="utf-8")
    merged = _merge({}, _read(text, source), source)
    missing = [f"{s}.{k}" for s, keys in _SCHEMA.items() for k in keys if k not in merged.get(s, {})]
    if missing:  # pragma: no cover - the packaged file is checked by the doctest above
        raise ConfigError(f"{source}: missing {', '.join(missing)}")
    return merged


def load_prompts(path: str | Path | None = None) -> TeacherPrompts:
    """The packaged prompts, with the keys of the YAML file ``path`` (if given) replacing theirs."""
    merged = _packaged()
    source = "tracekd/templates/teacher.yaml"
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read teacher prompts: {e.strerror or e}") from None
        merged = _merge(merged, _read(text, str(path)), str(path))
        source = str(path)
    synonyms = merged.get("class_synonyms", {})
    return TeacherPrompts({k: v for k, v in merged.items() if k != "class_synonyms"}, synonyms, source)


def _with_system(system: str | None, user: str) -> list[Message]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def question_messages(example: Example, prompts: TeacherPrompts) -> list[Message]:
    """The teacher's (and the zero-shot baseline's) request for ``example``."""
    user = prompts.get("question", "user").format(context="\n".join(example.context), question=example.question)
    return _with_system(prompts.get("question", "system"), user)


def summary_messages(trace: str, prompts: TeacherPrompts) -> list[Message]:
    """The summariser's request for one teacher trace."""
    return _with_system(prompts.get("summary", "system"), prompts.get("summary", "user").format(trace=trace))


def explanation_messages(question: list[Message], answer: str, prompts: TeacherPrompts) -> list[Message]:
    """The follow-up turn: the question, the teacher's own answer, and the request to explain it."""
    return [*question, {"role": "assistant", "content": answer},
            {"role": "user", "content": prompts.get("explanation", "user")}]


def zero_shot_format_prompt(example: Example, worked: Example, template: Template,
                            prompts: TeacherPrompts) -> tuple[Message, ...]:
    """The zero-shot-format prompt: ``example``'s question with ``worked`` (a train item) shown with its
    correct decomposed trace."""
    ask = render_prompt(example, template)[-1]["content"]
    shown = render_prompt(worked, template)[-1]["content"]
    user = prompts.get("zero_shot_format", "user").format(
        example_prompt=shown, example_completion=render_completion(worked, worked.gold, template), prompt=ask)
    return tuple(_with_system(prompts.get("zero_shot_format", "system"), user))
