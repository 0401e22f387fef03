"""Teacher stages of `tracekd run`: the experiment's ``teacher:`` section and the ``teacher`` stage kind.

With a ``teacher:`` section, each dataset gets one ``teacher`` stage before its builds. It loads the
dataset's examples (the same stratified subsets the build uses), asks the teacher every question in
the method's prompt (``answer/``), then - for the items the teacher got right - asks the explainer
for a post-hoc explanation (``explanation/``, a follow-up turn) and the summariser for a summary of
the reasoning (``summary/``), each through :func:`tracekd.teacher.client.run_requests`: keyed on
disk, resumable, budgeted. The builds read those folders (``BuildConfig.teacher_responses``), so every
arm is restricted to the teacher-correct subset. An endpoint is either a URL (``${VAR}`` and
``${VAR:-default}`` are read from the environment) or ``serve: STUDENT``: tracekd starts
``transformers serve`` on 127.0.0.1 for the stage and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

from .. import students
from ..build import stratified_subset
from ..config import load_config
from ..datasets import DATASETS
from ..errors import ConfigError, TracekdError
from ..io import read_json
from ..records import Example
from ..score.answer import get_scorer
from ..synth import generate_into
from ..traces.templates import get_template
from .arms import TeacherArms, load_responses
from .client import dry_run, run_requests
from .config import TeacherConfig
from .prompts import explanation_messages, load_prompts, question_messages, summary_messages
from .records import TeacherRequest
from .server import serve_local

#: the responses each teacher arm needs besides the answers
PURPOSES = {"teacher-summary": "summary", "teacher-explanation": "explanation"}
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand(value: str | None) -> str | None:
    """``${VAR}`` / ``${VAR:-default}`` replaced from the environment; an unset VAR without default is an error.

    >>> os.environ["TRACEKD_DOCTEST_URL"] = "http://127.0.0.1:9/v1"
    >>> expand("${TRACEKD_DOCTEST_URL}"), expand("${TRACEKD_UNSET_X:-https://api.deepseek.com}")
    ('http://127.0.0.1:9/v1', 'https://api.deepseek.com')
    """
    if value is None:
        return None

    def sub(m: re.Match) -> str:
        if m.group(1) in os.environ:
            return os.environ[m.group(1)]
        if m.group(2) is not None:
            return m.group(2)
        raise ConfigError(f"teacher endpoint: environment variable {m.group(1)} is not set (used in {value!r})")

    return _VAR.sub(sub, value)


@dataclass
class Endpoint:
    """An OpenAI-compatible endpoint and the client settings used with it."""

    base_url: str | None = field(default=None, metadata={
        "help": "OpenAI-compatible base URL, e.g. https://api.deepseek.com; ${VAR} and ${VAR:-default} are "
                "read from the environment"})
    model: str | None = field(default=None, metadata={"help": "model id, e.g. deepseek-reasoner (${VAR} allowed)"})
    serve: str | None = field(default=None, metadata={
        "help": "instead of base_url/model: a built-in student or model folder that tracekd serves with "
                "`transformers serve` on 127.0.0.1 for the stage (offline)"})
    api_key_env: str | None = field(default=None, metadata={
        "help": "environment variable holding the API key (never written anywhere; default OPENAI_API_KEY, "
                "or the teacher's for the summariser and explainer)"})
    settings: dict = field(default_factory=dict, metadata={
        "help": "client settings (fields of `tracekd teacher`: temperature, top_p, max_tokens, seed, extra_body, "
                "concurrency, max_requests, max_tokens_total, price_per_1m_input/output, timeout, max_retries, "
                "cache_dir)"})

    def check(self, where: str) -> None:
        if self.serve is not None and (self.base_url or self.model):
            raise ConfigError(f"{where}: give either serve or base_url + model, not both")
        if self.serve is None and not (self.base_url and self.model):
            raise ConfigError(f"{where}: needs base_url and model (or serve: STUDENT for a local server)")
        fixed = [k for k in self.settings if k in ("base_url", "model", "api_key_env", "progress")]
        if fixed:
            raise ConfigError(f"{where}.settings.{fixed[0]}: set it beside settings, not inside")
        try:
            load_config(TeacherConfig, {"base_url": "http://127.0.0.1:1/v1", "model": "m", **self.settings})
        except ConfigError as e:
            raise ConfigError(f"{where}.settings: {e}") from None


@dataclass
class TeacherSection(Endpoint):
    """The experiment's teacher: its endpoint, the summariser and explainer, and how the arms use them."""

    summariser: Endpoint | None = field(default=None, metadata={
        "help": "endpoint of the summaries (default: the teacher's endpoint; temperature from the summary "
                "prompt, 0, unless its settings say otherwise)"})
    explainer: Endpoint | None = field(default=None, metadata={
        "help": "endpoint of the post-hoc explanations (default: the teacher itself, as a follow-up turn)"})
    answer: str = field(default="gold", metadata={
        "choices": ("gold", "teacher"),
        "help": "what the teacher arms put in <answer>: gold, or teacher (its own answer text; recorded)"})
    prompts: str | None = field(default=None, metadata={
        "help": "YAML file overriding tracekd/templates/teacher.yaml (prompts, class synonyms)"})
    scorer: str = field(default="strict", metadata={
        "help": "scorer deciding whether the teacher's answer is right (strict: the method's; contains: every gold "
                "answer occurs in it as whole words, lenient, for weak teachers; none keeps every answered item)"})
    trace: str = field(default="reasoning", metadata={
        "choices": ("reasoning", "content"),
        "help": "the teacher's trace: reasoning (returned reasoning_content or <think> block) or content (its "
                "whole answer text, for a non-reasoning teacher asked to think aloud)"})

    def __post_init__(self) -> None:
        self.check("teacher")
        for name in ("summariser", "explainer"):
            ep = getattr(self, name)
            if ep is not None and (ep.serve or ep.base_url or ep.model):
                ep.check(f"teacher.{name}")
        if self.answer not in ("gold", "teacher"):
            raise ConfigError(f"teacher.answer must be gold or teacher, got {self.answer!r}")
        if self.prompts is not None:
            load_prompts(self.prompts)
        if self.scorer not in ("none", "contains"):
            get_scorer(self.scorer)
        if self.trace not in ("reasoning", "content"):
            raise ConfigError(f"teacher.trace must be reasoning or content, got {self.trace!r}")


# --- the plan ----------------------------------------------------------------------------------------


def teacher_stage_spec(section: TeacherSection, arms, dataset_spec: dict) -> dict:
    """The JSON spec of a dataset's teacher stage (what its key hashes); secrets stay out (only env names)."""
    def ep(e: Endpoint | None) -> dict | None:
        if e is None or not (e.serve or e.base_url or e.model):
            return None
        return {"base_url": expand(e.base_url), "model": expand(e.model), "serve": e.serve,
                "api_key_env": e.api_key_env, "settings": dict(e.settings)}

    purposes = ["answer"] + [PURPOSES[a] for a in arms if a in PURPOSES]
    return {**dataset_spec, "purposes": purposes, "teacher": ep(section), "summariser": ep(section.summariser),
            "explainer": ep(section.explainer), "prompts": section.prompts, "scorer": section.scorer,
            "trace": section.trace}


def build_spec_additions(section: TeacherSection) -> dict:
    """Fields a build stage gets when the experiment has a teacher (its responses are added at run time)."""
    return {"teacher_answer": section.answer, "teacher_prompts": section.prompts,
            "teacher_scorer": section.scorer, "teacher_trace": section.trace}


def response_dirs(teacher_stage_dir: Path) -> tuple[str, ...]:
    """The response folders a teacher stage wrote, for ``BuildConfig.teacher_responses``."""
    return tuple(str(teacher_stage_dir / p) for p in ("answer", "summary", "explanation")
                 if (teacher_stage_dir / p / "responses.jsonl").is_file())


# --- running ------------------------------------------------------------------------------------------


def load_examples(spec: dict, data: str) -> dict[str, list[Example]]:
    """The examples of each split exactly as the build selects them (before the teacher subset)."""
    splits = DATASETS.get(spec["dataset"]).load_splits(data, **spec.get("options", {}))
    return {split: stratified_subset(exs, {"train": spec.get("max_train"), "test": spec.get("max_test")}.get(split),
                                     spec.get("subset_seed", 0))
            for split, exs in splits.items()}


def client_config(ep: dict, base_url: str, model: str, *, default_key_env: str | None = None,
                  temperature: float | None = None):
    """The client's TeacherConfig for endpoint spec ``ep`` reached at ``base_url`` / ``model``."""
    settings = dict(ep.get("settings") or {})
    if temperature is not None:
        settings.setdefault("temperature", temperature)
    settings.setdefault("progress", False)
    key_env = ep.get("api_key_env") or default_key_env
    if key_env:
        settings["api_key_env"] = key_env
    return load_config(TeacherConfig, {"base_url": base_url, "model": model, **settings})


@contextlib.contextmanager
def reach(ep: dict) -> Iterator[tuple[str, str]]:
    """``(base_url, model)`` of an endpoint spec, serving it locally for the block when it says ``serve``."""
    if ep.get("serve"):
        with serve_local(ep["serve"]) as server:
            yield server.base_url, server.model
    else:
        yield ep["base_url"], ep["model"]


def served_model(ep: dict) -> str:
    """The model id requests to ``ep`` carry (a served student answers to its folder), without starting it."""
    if ep.get("serve"):
        return students.resolve(ep["serve"]).source
    return ep["model"]


def _check_complete(out: Path, what: str) -> None:
    m = read_json(out / "manifest.json")
    if not m.get("complete", True):
        raise TracekdError(f"teacher stage: the {what} requests are not all answered ({out / 'manifest.json'} says "
                           "why: a budget or failed requests); run again to continue (answers are kept)")


def answer_requests(examples: dict[str, list[Example]], prompts):
    return [TeacherRequest(ex.id, "answer", question_messages(ex, prompts)) for exs in examples.values() for ex in exs]


def followup_requests(examples: dict[str, list[Example]], answers: dict, purposes, prompts, template,
                      scorer: str = "strict", trace: str = "reasoning"):
    """Summary and explanation requests for the items whose teacher answer is right (with a trace)."""
    judge = TeacherArms(answers, template, scorer=scorer, prompts=prompts, trace_from=trace)
    out: dict[str, list] = {p: [] for p in purposes if p != "answer"}
    for exs in examples.values():
        for ex in exs:
            if judge.subset([ex], ())[0]:
                r = answers[(ex.id, "answer")]
                if "summary" in out:
                    out["summary"].append(TeacherRequest(ex.id, "summary",
                                                         summary_messages(judge.reasoning(ex.id), prompts)))
                if "explanation" in out:
                    out["explanation"].append(TeacherRequest(
                        ex.id, "explanation", explanation_messages(r.messages, r.answer, prompts)))
    return out


def run_teacher_stage(stage, run_dir: Path, data: str, log=print) -> None:
    """Fill a teacher stage folder: ``answer/``, then ``explanation/`` and ``summary/`` as the arms need.

    A served endpoint is started only when some request is not answered yet (in the folder or the
    response cache), and stopped when the stage ends.
    """
    spec = stage.spec
    out = stage.dir(run_dir)
    prompts = load_prompts(spec.get("prompts"))
    template = get_template(spec.get("template") or DATASETS.get(spec["dataset"]).template)
    examples = load_examples(spec, data)
    teacher = spec["teacher"]
    with contextlib.ExitStack() as stack:
        live: dict[str, tuple[str, str]] = {}

        def ask(requests, folder: Path, ep: dict, *, temperature: float | None = None, force_temp: bool = False,
                key_env: str | None = None) -> None:
            if not requests:  # e.g. nothing the teacher got right: an empty, complete folder
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "responses.jsonl").touch()
                return
            cfg = client_config(ep, ep.get("base_url") or "http://127.0.0.1:1/v1", served_model(ep),
                                default_key_env=key_env, temperature=None if force_temp else temperature)
            if force_temp:
                cfg = replace(cfg, temperature=temperature)
            if dry_run(requests, folder, cfg)["requests"]:
                name = ep.get("serve") or json.dumps(ep, sort_keys=True)  # one server per served model
                if name not in live:
                    live[name] = stack.enter_context(reach(ep))
                url, model = live[name]
                cfg = replace(cfg, base_url=url, model=model)
            run_requests(requests, folder, cfg, log=log)
            _check_complete(folder, folder.name)

        ask(answer_requests(examples, prompts), out / "answer", teacher)
        answers = load_responses([out / "answer"])
        follow = followup_requests(examples, answers, spec["purposes"], prompts, template,
                                   spec.get("scorer", "strict"), spec.get("trace", "reasoning"))
        temp = prompts.get("summary", "temperature")
        if "explanation" in follow:  # a follow-up turn to the teacher itself unless an explainer is named
            ask(follow["explanation"], out / "explanation", spec.get("explainer") or teacher,
                key_env=teacher.get("api_key_env"))
        if "summary" in follow:  # at the summary prompt's temperature on the teacher's endpoint
            ep = spec.get("summariser")
            ask(follow["summary"], out / "summary", ep or teacher, temperature=temp, force_temp=ep is None,
                key_env=teacher.get("api_key_env"))


def describe_teacher_stage(stage, run_dir: Path, data: str) -> str:
    """For ``--dry-run``: requests and tokens the answer step needs, how many are cached, and the follow-ups."""
    spec = stage.spec
    prompts = load_prompts(spec.get("prompts"))
    synth = stage.optional_input("synth")
    if synth is not None and not synth.done(run_dir):  # generated data: made in a temporary folder instead
        with tempfile.TemporaryDirectory() as tmp:
            generate_into(synth.spec, Path(tmp) / "data")
            examples = load_examples(spec, str(Path(tmp) / "data"))
    else:
        examples = load_examples(spec, data)
    reqs = answer_requests(examples, prompts)
    ep = spec["teacher"]
    cfg = client_config(ep, "http://127.0.0.1:1/v1" if ep.get("serve") else ep["base_url"], served_model(ep))
    d = dry_run(reqs, stage.dir(run_dir) / "answer", cfg)
    tokens = f"<= {d['tokens_max']:,} tokens" if d["tokens_max"] is not None else \
        f"<= {d['prompt_tokens_max']:,} prompt tokens + completions (max_tokens unset)"
    follow = [p for p in spec["purposes"] if p != "answer"]
    line = (f"teacher answers: {d['items']} items, {d['done']} done, {d['cached']} cached, "
            f"{d['requests']} request(s) to send ({tokens})")
    if follow:
        line += f"; then up to {d['items']} {' + '.join(follow)} request(s), one per teacher-correct item"
    return line


__all__ = ["Endpoint", "TeacherSection", "build_spec_additions", "describe_teacher_stage", "expand",
           "load_examples", "response_dirs", "run_teacher_stage", "teacher_stage_spec"]
