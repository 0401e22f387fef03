"""Trace templates (data in ``templates/*.yaml``) and rendering of prompts and completions.

A template names four strings: the ``system`` message, the user ``prompt`` (placeholders
``{context}`` and ``{question}``), the ``class`` sentence (``{label}``) and the ``evidence``
sentence (``{evidence}``). A trace completion is::

    <think>{class sentence}\\n{evidence sentence}</think> <answer>{answer}</answer>

where ``{evidence}`` is the JSON list of the evidence lines and the answer is the plain string
(one gold answer) or a JSON list (several). The vanilla completion is the bare answer.

>>> t = get_template("reference-qa")
>>> render_trace("counting", ["Mary took the milk."], t)  # doctest: +NORMALIZE_WHITESPACE
'<think>The category of the question represents what is being asked in that question. The category
of the question asked is: counting.\\nI need to use the following text to answer the question:
["Mary took the milk."]</think>'
>>> render_answer(["apple", "football"])
'["apple", "football"]'
"""

from __future__ import annotations

import functools
import json
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import ConfigError, DataError, did_you_mean
from ..records import Decomposition, Example, Message, SFTRow
from ..registry import Registry

if TYPE_CHECKING:
    from .corrupt import Target

_PACKAGE_FILES = ("reference.yaml",)
_KEYS = {"system": "system", "prompt": "prompt", "class": "class_sentence", "evidence": "evidence_sentence"}
_OPTIONAL_KEYS = {"name", "description"}
#: placeholders each template string must hold (exactly once for the two trace sentences)
_PLACEHOLDERS = {"system": (), "prompt": ("context", "question"), "class": ("label",), "evidence": ("evidence",)}


@dataclass(frozen=True)
class Template:
    """One trace template. ``class_sentence`` holds ``{label}``, ``evidence_sentence`` ``{evidence}``."""

    name: str
    system: str
    prompt: str
    class_sentence: str
    evidence_sentence: str
    description: str = field(default="", compare=False)

    @property
    def class_affixes(self) -> tuple[str, str]:
        """The fixed text before and after ``{label}``.

        >>> get_template("reference-cotemp").class_affixes[1]
        '.'
        """
        return _split_placeholder(self.class_sentence, "label")

    @property
    def evidence_affixes(self) -> tuple[str, str]:
        """The fixed text before and after ``{evidence}``."""
        return _split_placeholder(self.evidence_sentence, "evidence")

    def to_dict(self) -> dict:
        """The template as data (for manifests), in the yaml's key names."""
        return {"name": self.name, "system": self.system, "prompt": self.prompt,
                "class": self.class_sentence, "evidence": self.evidence_sentence}


def _split_placeholder(text: str, name: str) -> tuple[str, str]:
    """``(before, after)`` of the single ``{name}`` in ``text``, braces unescaped."""
    before, after = text.split("{" + name + "}", 1)
    return before.replace("{{", "{").replace("}}", "}"), after.replace("{{", "{").replace("}}", "}")


def _fields(text: str, where: str) -> list[str]:
    """The placeholder names in ``text``; format specs and conversions are refused."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as e:
        raise ConfigError(f"{where}: bad placeholder syntax ({e}); write a literal brace as {{{{ or }}}}") from None
    out = []
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if spec or conv:
            raise ConfigError(f"{where}: placeholder {{{name}}} may not have a format spec or conversion")
        out.append(name)
    return out


def _make(name: str, raw: Any, source: str) -> Template:
    """Validate one template mapping from ``source``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: template {name!r} must be a mapping with keys "
                          f"{', '.join(_KEYS)}, got {type(raw).__name__}")
    for key in raw:
        if key not in _KEYS and key not in _OPTIONAL_KEYS:
            raise ConfigError(f"{source}: template {name!r}: " + did_you_mean(str(key), [*_KEYS, *_OPTIONAL_KEYS], "key"))
    values = {}
    for key, attr in _KEYS.items():
        where = f"{source}: template {name!r}, key {key!r}"
        if key not in raw:
            raise ConfigError(f"{where}: missing")
        value = raw[key]
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string, got {type(value).__name__}")
        found = _fields(value, where)
        want = _PLACEHOLDERS[key]
        for f in found:
            if f not in want:
                allowed = ", ".join("{" + w + "}" for w in want) or "none"
                raise ConfigError(f"{where}: unknown placeholder {{{f}}} (allowed: {allowed})")
        for w in want:
            if w not in found:
                raise ConfigError(f"{where}: must contain {{{w}}}")
            if key in ("class", "evidence"):
                if found.count(w) != 1:
                    raise ConfigError(f"{where}: must contain {{{w}}} exactly once")
                if not _split_placeholder(value, w)[0].strip():
                    raise ConfigError(f"{where}: needs fixed text before {{{w}}} (the parser finds the step by it)")
        values[attr] = value
    return Template(name=name, description=str(raw.get("description") or ""), **values)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None


@functools.lru_cache(maxsize=None)
def shipped_templates() -> Registry[Template]:
    """The templates shipped with tracekd (``tracekd/templates/*.yaml``), read on first use.

    >>> shipped_templates().listing()[0]
    ('reference-cotemp', "the method's CoTemp trace: temporal relation sentence, then the facts needed")
    """
    templates: Registry[Template] = Registry("template")
    for filename in _PACKAGE_FILES:
        source = f"tracekd/templates/{filename}"
        text = resources.files("tracekd").joinpath("templates", filename).read_text(encoding="utf-8")
        data = _load_yaml(text, source)
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: must be a mapping of template name -> template")
        for name, raw in sorted(data.items()):
            template = _make(str(name), raw, source)
            templates.add(template.name, template, template.description)
    return templates


def template_names() -> list[str]:
    """Names of the templates shipped with tracekd.

    >>> template_names()
    ['reference-cotemp', 'reference-qa']
    """
    return sorted(shipped_templates())


def load_template_file(path: str | Path) -> Template:
    """A template from a user yaml file holding one template.

    The file is either the template mapping itself (keys ``system``, ``prompt``, ``class``,
    ``evidence``, optional ``name`` - default: the file's stem) or ``{name: template}`` with one entry.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read template file: {e.strerror or e}") from None
    data = _load_yaml(text, str(path))
    if isinstance(data, dict) and set(_KEYS) & set(data):
        return _make(str(data.get("name") or path.stem), data, str(path))
    if isinstance(data, dict) and len(data) == 1:
        (name, raw), = data.items()
        return _make(str(name), raw, str(path))
    raise ConfigError(f"{path}: must hold one template (a mapping with keys {', '.join(_KEYS)}, "
                      f"or one name mapped to such a mapping)")


def get_template(name: str | Template) -> Template:
    """A shipped template by name, or one loaded from a yaml file path (did-you-mean on a typo).

    >>> get_template("reference-cotemp").name
    'reference-cotemp'
    >>> get_template("reference-q")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: unknown template 'reference-q'; did you mean 'reference-qa'? (choices: reference-cotemp, reference-qa)
    """
    if isinstance(name, Template):
        return name
    templates = shipped_templates()
    if name not in templates and (Path(name).suffix.lower() in (".yaml", ".yml") or Path(name).is_file()):
        return load_template_file(name)
    return templates.get(name)


# --- rendering -------------------------------------------------------------------------------------


def render_prompt(example: Example, template: Template) -> tuple[Message, ...]:
    """The system and user messages: the template's prompt filled with the context lines and question.

    >>> ex = Example("x/1", "babi", "test", "Where is Mary?", ("Mary went home.", "John left."),
    ...              ("home",), Decomposition("qa1", (0,)))
    >>> render_prompt(ex, get_template("reference-qa"))[1]["content"]
    'Answer the question based on the context:\\nMary went home.\\nJohn left.\\nQuestion: Where is Mary? Only return the answer.'
    """
    user = template.prompt.format(context="\n".join(example.context), question=example.question)
    return ({"role": "system", "content": template.system}, {"role": "user", "content": user})


def render_evidence(lines) -> str:
    """The evidence list as written in every trace: a JSON list, non-ASCII kept.

    >>> render_evidence(['He said "hi".', "Zoë left."])
    '["He said \\\\"hi\\\\".", "Zoë left."]'
    >>> render_evidence([])
    '[]'
    """
    return json.dumps(list(lines), ensure_ascii=False)


def render_trace(label: str, evidence_lines, template: Template) -> str:
    """The ``<think>...</think>`` part: class sentence, newline, evidence sentence."""
    cls = template.class_sentence.format(label=label)
    ev = template.evidence_sentence.format(evidence=render_evidence(evidence_lines))
    return f"<think>{cls}\n{ev}</think>"


def render_answer(answers) -> str:
    """One gold answer as the plain string; several as a JSON list.

    >>> render_answer(("kitchen",))
    'kitchen'
    >>> render_answer([])
    Traceback (most recent call last):
    ...
    tracekd.errors.DataError: field 'answers': no gold answer to render
    """
    answers = list(answers)
    if not answers:
        raise DataError("no gold answer to render", field="answers")
    return answers[0] if len(answers) == 1 else json.dumps(answers, ensure_ascii=False)


def _evidence_lines(example: Example, target: Decomposition) -> list[str]:
    n = len(example.context)
    for i in target.evidence:
        if not 0 <= i < n:
            raise DataError(f"evidence index {i} out of range (context has {n} lines)",
                            field="evidence", source=example.id)
    return [example.context[i] for i in target.evidence]


def render_completion(example: Example, target: Decomposition | None, template: Template) -> str:
    """The assistant text: trace + gold answer, or (``target`` None, the vanilla arm) the bare answer.

    >>> ex = Example("x/1", "babi", "test", "Where is Mary?", ("Mary went home.",), ("home",),
    ...              Decomposition("qa1", (0,)))
    >>> render_completion(ex, None, get_template("reference-qa"))
    'home'
    >>> render_completion(ex, ex.gold, get_template("reference-cotemp"))
    '<think>The temporal relation between the event in question and the event in context is: qa1.\\nI need to use the following facts to answer the question: ["Mary went home."]</think> <answer>home</answer>'
    """
    answer = render_answer(example.answers)
    if target is None:
        return answer
    return f"{render_trace(target.label, _evidence_lines(example, target), template)} <answer>{answer}</answer>"


def render_row(example: Example, arm: str, target: "Decomposition | Target | None", template: Template) -> SFTRow:
    """One SFT row for ``arm``: prompt messages, the assistant completion, and the target it encodes.

    ``target`` is the decomposition the trace shows (``None`` for vanilla); a
    :class:`tracekd.traces.corrupt.Target` is accepted too.
    """
    if target is not None and not isinstance(target, Decomposition):
        target = target.decomposition  # a corrupt.Target
    if (arm == "vanilla") != (target is None):
        raise ValueError(f"{example.id}: arm {arm!r} " + ("takes no target" if arm == "vanilla" else "needs a target"))
    return SFTRow(
        id=example.id,
        arm=arm,
        prompt=render_prompt(example, template),
        completion=({"role": "assistant", "content": render_completion(example, target, template)},),
        target=target,
    )
