"""The study config: conditions, Likert statements, attention checks, pages' text, exclusion rules.

Everything a participant reads is data: the defaults live in ``default.yaml`` beside this module (the
method's four trace types, its interpretability and cognitive-load items on a 5-point scale); a study's
own YAML overrides any key (``tracekd study build --config my-study.yaml``).

>>> cfg = default_config()
>>> [c.name for c in cfg.conditions]
['decomposed', 'teacher-trace', 'teacher-summary', 'teacher-explanation']
>>> cfg.scale_of("cognitive_load"), cfg.points
('cognitive_load', 5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config import load_config, read_yaml, to_dict
from ..errors import ConfigError

DEFAULT_YAML = Path(__file__).with_name("default.yaml")


@dataclass
class Condition:
    name: str = field(metadata={"help": "condition name shown in exports and analyses (never to participants)"})
    arm: str = field(default="", metadata={"help": "arm folder holding this condition's rows (default: the name)"})
    source: str = field(default="", metadata={
        "help": "build folder holding the arm (default: the build folder given to `study build`)"})
    label: str = field(default="", metadata={"help": "human-readable description for tables and plots"})


@dataclass
class LikertItem:
    id: str = field(metadata={"help": "identifier (a column name in exports)"})
    text: str = field(metadata={"help": "the statement participants rate"})
    scale: str = field(default="", metadata={"help": "the scale this item scores (default: its own id)"})
    reverse: bool = field(default=False, metadata={"help": "reverse-keyed: scored as points+1-value in scales"})


@dataclass
class AttentionCheck:
    id: str = field(metadata={"help": "identifier of the instructed-response statement"})
    text: str = field(metadata={"help": "the statement, naming the answer to select"})
    expected: int = field(metadata={"help": "the value (1..points) a reading participant selects"})


@dataclass
class StudyConfig:
    title: str = field(default="Rating reasoning traces", metadata={"help": "study title shown on every page"})
    design: str = field(default="between", metadata={
        "help": "between: one condition per participant; within: every participant rates every condition",
        "choices": ["between", "within"]})
    seed: int = field(default=0, metadata={"help": "seed for item sampling, assignment ties and item order"})
    split: str = field(default="test", metadata={"help": "split of the build folder to sample items from"})
    items_per_condition: int = field(default=12, metadata={"help": "items sampled per condition"})
    items_per_participant: int = field(default=6, metadata={
        "help": "item pages each participant rates (within: split evenly over the conditions)"})
    conditions: list[Condition] = field(default_factory=list, metadata={"help": "the trace types compared"})
    scale_labels: list[str] = field(default_factory=list, metadata={
        "help": "labels of the Likert points, lowest first (their number is the number of points)"})
    likert_items: list[LikertItem] = field(default_factory=list, metadata={
        "help": "statements rated on every item page"})
    attention_checks: list[AttentionCheck] = field(default_factory=list, metadata={
        "help": "instructed-response statements, each placed on one seeded item page"})
    min_median_seconds: float = field(default=5.0, metadata={
        "help": "participants whose median seconds per item page is below this are flagged too fast"})
    completion_url: str = field(default="", metadata={
        "help": "where a participant who finished is redirected ({code} is replaced by completion_code)"})
    completion_code: str = field(default="", metadata={"help": "the completion code (e.g. Prolific's)"})
    consent: str = field(default="", metadata={"help": "consent page text (paragraphs separated by blank lines)"})
    instructions: str = field(default="", metadata={"help": "instructions page text"})
    item_prompt: str = field(default="", metadata={"help": "text above the statements on each item page"})

    @property
    def points(self) -> int:
        return len(self.scale_labels)

    def scale_of(self, likert_id: str) -> str:
        for it in self.likert_items:
            if it.id == likert_id:
                return it.scale or it.id
        raise KeyError(likert_id)

    def scales(self) -> dict[str, list[str]]:
        """Scale name -> its Likert item ids, in config order."""
        out: dict[str, list[str]] = {}
        for it in self.likert_items:
            out.setdefault(it.scale or it.id, []).append(it.id)
        return out

    def completion_target(self) -> str:
        return self.completion_url.replace("{code}", self.completion_code)

    def check(self) -> "StudyConfig":
        """Raise ConfigError on an inconsistent config; return self."""
        if self.design not in ("between", "within"):
            raise ConfigError(f"design must be 'between' or 'within', got {self.design!r}")
        if not self.conditions:
            raise ConfigError("a study needs at least one condition")
        names = [c.name for c in self.conditions]
        if len(set(names)) < len(names):
            raise ConfigError(f"condition names repeat: {names}")
        if self.points < 2:
            raise ConfigError("scale_labels needs at least two labels")
        if not self.likert_items:
            raise ConfigError("a study needs at least one Likert item")
        ids = [it.id for it in self.likert_items] + [a.id for a in self.attention_checks]
        if len(set(ids)) < len(ids):
            raise ConfigError(f"Likert item and attention check ids must differ: {ids}")
        for a in self.attention_checks:
            if not 1 <= a.expected <= self.points:
                raise ConfigError(f"attention check {a.id!r}: expected must be 1..{self.points}")
        if self.items_per_condition < 1 or self.items_per_participant < 1:
            raise ConfigError("items_per_condition and items_per_participant must be at least 1")
        per_cond = self.pages_per_condition()
        if per_cond > self.items_per_condition:
            raise ConfigError(f"each participant would rate {per_cond} items of a condition, but only "
                              f"{self.items_per_condition} are sampled per condition")
        if len(self.attention_checks) > self.items_per_participant:
            raise ConfigError("more attention checks than item pages")
        for c in self.conditions:
            c.arm = c.arm or c.name
        return self

    def pages_per_condition(self) -> int:
        """Items of one condition a participant rates.

        >>> load_study_config(overrides={"design": "within", "items_per_participant": 8}).pages_per_condition()
        2
        """
        if self.design == "within":
            n = len(self.conditions)
            if self.items_per_participant % n:
                raise ConfigError(f"within-subjects: items_per_participant ({self.items_per_participant}) must "
                                  f"be a multiple of the {n} conditions")
            return self.items_per_participant // n
        return self.items_per_participant


def load_study_config(source: str | Path | Mapping[str, Any] | None = None,
                      overrides: Mapping[str, Any] | None = None) -> StudyConfig:
    """The defaults of ``default.yaml`` < ``source`` (a YAML path or dict) < ``overrides``; checked."""
    base = read_yaml(DEFAULT_YAML)
    if source is not None:
        given = read_yaml(source) if isinstance(source, (str, Path)) else dict(source)
        base.update(given)
    return load_config(StudyConfig, base, dict(overrides or {})).check()


def default_config() -> StudyConfig:
    return load_study_config()


def config_dict(cfg: StudyConfig) -> dict:
    return to_dict(cfg)
