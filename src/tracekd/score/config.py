"""``ScoreConfig``: every setting of ``tracekd score`` (flags, or keys of a ``--config`` YAML file)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .steps import DEFAULT_TRACE_DEFINITION, TRACE_DEFINITIONS

#: the read settings whose value ``none`` (or empty) means "the generations have no such field"
_NULLABLE = ("id_field", "finish_field")


@dataclass
class ScoreConfig:
    """Judge a generations JSONL against the gold examples; the judgements and summary go to ``out``."""

    generations: str = field(metadata={
        "help": "generations JSONL (from tracekd generate or any other tool)", "positional": True,
        "metavar": "GENERATIONS"})
    examples: str = field(metadata={"help": "gold examples JSONL (BUILD_DIR/examples/test.jsonl)"})
    out: str = field(metadata={"help": "output directory (refused when not empty, unless --overwrite)"})
    id_field: str | None = field(default="id", metadata={
        "help": "id field; none joins by question+context"})
    text_field: str = field(default="text", metadata={"help": "generated text field (dots for nesting)"})
    finish_field: str | None = field(default="finish_reason", metadata={
        "help": "finish-reason field (none if absent)"})
    question_field: str = field(default="question", metadata={
        "help": "question field for the join without ids"})
    context_field: str = field(default="context", metadata={"help": "context field for the join without ids"})
    template: str | None = field(default=None, metadata={"help": "trace template (default: the dataset's)"})
    scorer: str | None = field(default=None, metadata={
        "help": "answer scorer: strict (default), cotemp-official (compatibility), marco[:CRITERION]"})
    trace_definition: str = field(default=DEFAULT_TRACE_DEFINITION, metadata={
        "help": "what makes a whole trace correct", "choices": list(TRACE_DEFINITIONS)})
    strict: bool = field(default=False, metadata={
        "help": "fail on the first invalid/duplicate/unknown line instead of reporting it"})
    arm: str | None = field(default=None, metadata={
        "help": "the arm these generations come from, recorded for analyze/report (default: the lines' own "
                "'arm' field, else the generations manifest's)"})
    student: str | None = field(default=None, metadata={
        "help": "the student that wrote them (default: the generations manifest's)"})
    seed: int | None = field(default=None, metadata={"help": "the cell's seed (default: the generations manifest's)"})

    def __post_init__(self) -> None:
        for name in _NULLABLE:
            if getattr(self, name) == "":
                setattr(self, name, None)
