"""Teacher arms and the untrained baselines, rendered as SFT rows in the same format as the other arms.

From the teacher responses (``responses.jsonl`` folders of ``tracekd teacher``, joined to examples by
id and purpose ``answer`` / ``summary`` / ``explanation``):

- the **teacher-correct subset**: an example is kept only when the teacher answered (not cut off), its
  answer is right under the strict scorer, it gave a reasoning trace, and every other response the
  requested arms need exists; the rest are dropped and counted by reason. Every arm of the build,
  the decomposed ones included, is restricted to that subset;
- ``teacher-trace``: ``<think>{reasoning}</think> <answer>{answer}</answer>``; the answer is the gold
  answer (default) or the teacher's own answer text (``answer="teacher"``, as the reference work did);
- ``teacher-summary`` / ``teacher-explanation``: the summariser's summary / the teacher's post-hoc
  explanation in place of the reasoning;
- ``teacher-swapped``: each item's answer with another item's reasoning, by a seeded derangement
  within each gold class (classes with a single item are deranged together);
- ``teacher-trace-short``: the reasoning cut at a sentence boundary to the token length of the same
  item's correct decomposed trace (:func:`tracekd.score.freeform.cut_at_sentence`);
- ``zero-shot`` / ``zero-shot-format``: not trained; the base student prompted with the method's
  prompt, or with one worked example of the decomposed trace format. Their completions are the
  vanilla answer / the correct trace, as references.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError, did_you_mean
from ..records import Example, SFTRow
from ..score.answer import get_scorer
from ..score.freeform import cut_at_sentence, measure, tokens, trace_text
from ..text import normalize_answer
from ..traces.corrupt import ARM_MAKERS, BASELINE_ARMS, TEACHER_ARMS
from ..traces.templates import Template, render_answer, render_completion, render_prompt
from .prompts import TeacherPrompts, load_prompts, zero_shot_format_prompt
from .records import TeacherResponse, iter_responses

ANSWER_CHOICES = ("gold", "teacher")
#: teacher filters besides the answer scorers: keep every answered item, or a lenient containment check
FILTERS = ("none", "contains")
TRACE_CHOICES = ("reasoning", "content")
#: the responses each teacher arm needs besides the answer
_NEEDS = {"teacher-summary": "summary", "teacher-explanation": "explanation"}
RESPONSES_FILE = "responses.jsonl"


def load_responses(folders) -> dict[tuple[str, str], TeacherResponse]:
    """``{(id, purpose): response}`` from the ``responses.jsonl`` of each folder (a file path works too).

    Two responses for the same (id, purpose) with different answers are an error naming both lines;
    identical repeats are read once.
    """
    out: dict[tuple[str, str], TeacherResponse] = {}
    where: dict[tuple[str, str], str] = {}
    for folder in folders:
        path = Path(folder)
        if path.is_dir():
            path = path / RESPONSES_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: no teacher responses there (expected the output folder of `tracekd teacher`)")
        for lineno, r in iter_responses(path):
            k = (r.id, r.purpose)
            if k in out and (out[k].answer, out[k].reasoning) != (r.answer, r.reasoning):
                raise DataError(f"a second, different {r.purpose!r} response for id {r.id!r} (first at {where[k]}); "
                                "keep one run's responses per folder", path=path, line=lineno, field="id")
            out.setdefault(k, r)
            where.setdefault(k, f"{path}:{lineno}")
    return out


def contains_gold(prediction: str, answers) -> bool:
    """Whether every gold answer occurs as whole words in ``prediction`` (normalised as the strict scorer
    does): the lenient ``contains`` teacher filter, for weak teachers that answer in a sentence.

    >>> contains_gold("Sandra went back to the garden.", ["garden"]), contains_gold("gardens", ["garden"])
    (True, False)
    """
    words = normalize_answer(prediction).split()
    return all(_sublist(words, normalize_answer(a).split()) for a in answers)


def _sublist(words: list[str], part: list[str]) -> bool:
    return bool(part) and any(words[i:i + len(part)] == part for i in range(len(words) - len(part) + 1))


class _Verdict:
    def __init__(self, correct: bool):
        self.correct = correct


def _contains_score(prediction: str, example: Example) -> _Verdict:
    return _Verdict(contains_gold(prediction, example.answers))


def derangement(items: list[tuple[str, str]], seed: int) -> dict[str, str]:
    """``{id: partner_id}`` with no id its own partner, partners within the same group where possible.

    ``items`` are ``(id, group)`` pairs. Each group of two or more is a seeded random cycle; the
    single-item groups form one cycle together, and a last lone item is spliced into an existing
    cycle. Independent of the input order.

    >>> d = derangement([("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"), ("e", "y")], seed=0)
    >>> all(d[k] != k for k in d), {d["a"], d["b"]} == {"a", "b"}, {d["c"], d["d"], d["e"]} == {"c", "d", "e"}
    (True, True, True)
    >>> d = derangement([("a", "x"), ("b", "x"), ("c", "y")], seed=0)
    >>> sorted(d) == sorted(d.values()) == ["a", "b", "c"] and all(d[k] != k for k in d)
    True
    >>> derangement([("a", "x")], seed=0)
    {}
    """
    rng = random.Random(f"{seed}/teacher-swapped")
    groups: dict[str, list[str]] = {}
    for i, g in sorted(items):
        groups.setdefault(g, []).append(i)
    mapping: dict[str, str] = {}

    def cycle(ids: list[str]) -> None:
        order = list(ids)
        rng.shuffle(order)
        for a, b in zip(order, order[1:] + order[:1]):
            mapping[a] = b

    lone: list[str] = []
    for g in sorted(groups):
        if len(groups[g]) >= 2:
            cycle(groups[g])
        else:
            lone += groups[g]
    if len(lone) >= 2:
        cycle(lone)
    elif lone and mapping:
        a = rng.choice(sorted(mapping))
        mapping[lone[0]], mapping[a] = mapping[a], lone[0]
    return mapping


@dataclass
class TeacherArms:
    """Renders the teacher arms of one build from its teacher responses."""

    responses: dict[tuple[str, str], TeacherResponse]
    template: Template
    seed: int = 0
    answer: str = "gold"  # gold | teacher
    scorer: str = "strict"  # or any answer scorer; "contains" (lenient); "none" keeps every answered item
    prompts: TeacherPrompts = field(default_factory=load_prompts)
    trace_from: str = "reasoning"  # reasoning | content

    def __post_init__(self) -> None:
        if self.answer not in ANSWER_CHOICES:
            raise ConfigError(f"teacher answer must be one of {', '.join(ANSWER_CHOICES)}, got {self.answer!r}")
        if self.trace_from not in TRACE_CHOICES:
            raise ConfigError(f"teacher trace must be one of {', '.join(TRACE_CHOICES)}, got {self.trace_from!r}")
        if self.scorer == "none":
            self._score = None
        elif self.scorer == "contains":
            self._score = _contains_score
        else:
            self._score = get_scorer(self.scorer)

    def reasoning(self, example_id: str) -> str:
        """The teacher's trace for an item: its returned reasoning, or its whole answer text (``trace_from``)."""
        r = self.responses[(example_id, "answer")]
        return ((r.reasoning or "") if self.trace_from == "reasoning" else r.answer).strip()

    def subset(self, examples: list[Example], arms) -> tuple[list[Example], list[dict]]:
        """``(kept, dropped)``: the teacher-correct subset for ``arms``; ``dropped`` lists ``{id, reason}``."""
        needs = [_NEEDS[a] for a in arms if a in _NEEDS]
        kept, dropped = [], []
        for ex in examples:
            reason = self._drop_reason(ex, needs)
            if reason:
                dropped.append({"id": ex.id, "reason": reason})
            else:
                kept.append(ex)
        if "teacher-swapped" in arms and len(kept) == 1:  # nobody to swap traces with
            dropped.append({"id": kept.pop().id, "reason": "no_swap_partner"})
        return kept, dropped

    def _drop_reason(self, ex: Example, needs: list[str]) -> str | None:
        r = self.responses.get((ex.id, "answer"))
        if r is None:
            return "no_response"
        if r.finish_reason == "length" and self._score is not None:  # scorer none keeps every answered item
            return "truncated"
        if self._score is not None and not self._score(r.answer, ex).correct:
            return "teacher_wrong"
        if not self.reasoning(ex.id):
            return "no_reasoning"
        for purpose in needs:
            other = self.responses.get((ex.id, purpose))
            if other is None or not other.answer.strip():
                return f"no_{purpose}"
        return None

    def _answer_text(self, ex: Example) -> str:
        return self.responses[(ex.id, "answer")].answer if self.answer == "teacher" else render_answer(ex.answers)

    def trace(self, ex: Example, arm: str, partner: dict[str, str] | None = None) -> str:
        """The free-form trace ``arm`` shows for ``ex`` (teacher arms only; ``partner``: teacher-swapped's)."""
        if arm not in TEACHER_ARMS:
            raise ConfigError(did_you_mean(arm, TEACHER_ARMS, "teacher arm"))
        return ARM_MAKERS.get(arm)(self, ex, partner or {})

    def short_length(self, ex: Example) -> int:
        """Token length of ``ex``'s correct decomposed trace (the teacher-trace-short target)."""
        return len(tokens(trace_text(render_completion(ex, ex.gold, self.template))))

    def rows(self, arms, examples: list[Example]) -> tuple[dict[str, list[SFTRow]], dict]:
        """Rows of the teacher ``arms`` for the (teacher-correct) ``examples``, and what the manifest records."""
        partner = derangement([(ex.id, ex.gold.label) for ex in examples], self.seed) \
            if "teacher-swapped" in arms else {}
        by_id = {ex.id: ex for ex in examples}
        rows: dict[str, list[SFTRow]] = {}
        info: dict = {}
        for arm in arms:
            out = []
            for ex in examples:
                if arm == "teacher-swapped" and ex.id not in partner:
                    raise ConfigError(f"teacher-swapped needs at least two teacher-correct items; got {len(examples)}")
                text = f"<think>{self.trace(ex, arm, partner)}</think> <answer>{self._answer_text(ex)}</answer>"
                out.append(SFTRow(id=ex.id, arm=arm, prompt=render_prompt(ex, self.template),
                                  completion=({"role": "assistant", "content": text},)))
            rows[arm] = out
            info[arm] = freeform_summary([(by_id[r.id], trace_text(r.completion_text)) for r in out],
                                         self.prompts.class_synonyms)
        if partner:
            info["swaps"] = {"pairs": partner,
                             "same_class": sum(by_id[a].gold.label == by_id[b].gold.label for a, b in partner.items())}
        if "teacher-trace-short" in arms and examples:
            info["short"] = {"mean_target_tokens": _mean([self.short_length(ex) for ex in examples]),
                             "mean_full_tokens": _mean([len(tokens(self.trace(ex, "teacher-trace"))) for ex in examples])}
        return rows, info


# --- what makes each teacher arm's trace and each baseline's rows (looked up in traces.corrupt.ARM_MAKERS)


def teacher_trace(arms: TeacherArms, ex: Example, partner: dict[str, str]) -> str:
    return arms.reasoning(ex.id)


def teacher_summary(arms: TeacherArms, ex: Example, partner: dict[str, str]) -> str:
    return arms.responses[(ex.id, "summary")].answer.strip()


def teacher_explanation(arms: TeacherArms, ex: Example, partner: dict[str, str]) -> str:
    return arms.responses[(ex.id, "explanation")].answer.strip()


def teacher_swapped(arms: TeacherArms, ex: Example, partner: dict[str, str]) -> str:
    return arms.reasoning(partner[ex.id])


def teacher_trace_short(arms: TeacherArms, ex: Example, partner: dict[str, str]) -> str:
    return cut_at_sentence(arms.reasoning(ex.id), arms.short_length(ex))


def zero_shot_rows(examples: list[Example], template: Template, prompts: TeacherPrompts,
                   worked: Example | None) -> list[SFTRow]:
    """The method's prompt; the bare gold answer as the reference."""
    return [SFTRow(ex.id, "zero-shot", render_prompt(ex, template),
                   ({"role": "assistant", "content": render_completion(ex, None, template)},))
            for ex in examples]


def zero_shot_format_rows(examples: list[Example], template: Template, prompts: TeacherPrompts,
                          worked: Example | None) -> list[SFTRow]:
    """One worked example of the trace format in the prompt; the correct trace as the reference."""
    if worked is None:
        raise ConfigError("zero-shot-format needs a train example to show (the train split is empty)")
    return [SFTRow(ex.id, "zero-shot-format", zero_shot_format_prompt(ex, worked, template, prompts),
                   ({"role": "assistant", "content": render_completion(ex, ex.gold, template)},), target=ex.gold)
            for ex in examples]


def baseline_rows(arms, examples: list[Example], template: Template, prompts: TeacherPrompts,
                  worked: Example | None) -> dict[str, list[SFTRow]]:
    """Rows of the untrained baselines: ``zero-shot`` (the method's prompt, the bare gold answer as
    reference) and ``zero-shot-format`` (one worked example in the prompt, the correct trace as reference)."""
    for arm in arms:
        if arm not in BASELINE_ARMS:
            raise ConfigError(did_you_mean(arm, BASELINE_ARMS, "baseline arm"))
    return {arm: ARM_MAKERS.get(arm)(examples, template, prompts, worked) for arm in arms}


def worked_example(train: list[Example]) -> Example | None:
    """The train example zero-shot-format shows: the first one with gold evidence (input order)."""
    return next((ex for ex in train if ex.gold.evidence), train[0] if train else None)


class ExtraArms:
    """The part of a build beyond the decomposed arms: the teacher-correct subset, the teacher arms and
    the baselines. ``tracekd.build`` calls :meth:`subset` and :meth:`rows` for each split, then puts
    :meth:`manifest` into its manifest."""

    def __init__(self, config, template: Template, splits: dict[str, list[Example]]):
        self.arms = tuple(a for a in config.arms if a in TEACHER_ARMS + BASELINE_ARMS)
        self.template = template
        self.prompts = load_prompts(config.teacher_prompts)
        self.teacher = None
        if config.teacher_responses:
            self.teacher = TeacherArms(load_responses(config.teacher_responses), template, config.seed,
                                       config.teacher_answer, config.teacher_scorer, self.prompts,
                                       config.teacher_trace)
        self.worked = worked_example(list(splits.get("train", []))) if "zero-shot-format" in self.arms else None
        self.info: dict = {"subset": {}, "arms": {}}

    def subset(self, split: str, examples: list[Example]) -> list[Example]:
        """The teacher-correct subset of ``examples`` (all of them without teacher responses)."""
        if self.teacher is None:
            return examples
        kept, dropped = self.teacher.subset(examples, self.arms)
        self.info["subset"][split] = {"before": len(examples), "kept": len(kept),
                                      "dropped": dropped_counts(dropped), "dropped_ids": dropped}
        if examples and not kept:
            raise ConfigError(f"{split}: no item is in the teacher-correct subset ({len(examples)} asked; dropped: "
                              + ", ".join(f"{k} {v}" for k, v in dropped_counts(dropped).items())
                              + "); ask more items, or see the teacher's answers in its responses.jsonl")
        return kept

    def rows(self, split: str, kept: list[Example]) -> dict[str, list[SFTRow]]:
        rows = baseline_rows([a for a in self.arms if a in BASELINE_ARMS], kept, self.template, self.prompts,
                             self.worked)
        teacher_arms = [a for a in self.arms if a in TEACHER_ARMS]
        if teacher_arms:
            more, info = self.teacher.rows(teacher_arms, kept)
            rows.update(more)
            self.info["arms"][split] = info
        return rows

    def manifest(self) -> dict | None:
        if self.teacher is None and not self.arms:
            return None
        out: dict = {"arms": list(self.arms)}
        if self.worked is not None:
            out["zero_shot_format_example"] = self.worked.id
        if self.teacher is not None:
            models = sorted({r.model for r in self.teacher.responses.values()})
            out.update(answer=self.teacher.answer, scorer=self.teacher.scorer, trace=self.teacher.trace_from,
                       models=models,
                       prompts=self.prompts.source, **self.info)
        return out


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.fmean(vals), 4) if vals else None


def freeform_summary(items: list[tuple[Example, str]], synonyms: dict | None = None) -> dict:
    """Mean free-form measures over ``(example, trace)`` pairs: share mentioning the gold class, share
    mentioning all gold evidence, mean evidence recall / precision, mean length in tokens.

    >>> from tracekd.records import Decomposition
    >>> ex = Example("b/1", "babi", "test", "q", ("Mary went home.", "John left."), ("home",),
    ...              Decomposition("counting", (0,)))
    >>> freeform_summary([(ex, "Mary went home. Counting is easy."), (ex, "John left.")])
    {'n': 2, 'class_mentioned': 0.5, 'evidence_all': 0.5, 'evidence_recall': 0.5, 'evidence_precision': 0.5, 'tokens': 5.5}
    """
    ms = [measure(text, ex, synonyms) for ex, text in items]
    return {"n": len(ms),
            "class_mentioned": _mean([float(m.class_mentioned) for m in ms]),
            "evidence_all": _mean([float(m.evidence_all) for m in ms]),
            "evidence_recall": _mean([m.evidence_recall for m in ms]),
            "evidence_precision": _mean([m.evidence_precision for m in ms]),
            "tokens": _mean([m.tokens for m in ms])}


def dropped_counts(dropped: list[dict]) -> dict:
    """``{reason: count}`` in a fixed order.

    >>> dropped_counts([{"id": "a", "reason": "teacher_wrong"}, {"id": "b", "reason": "no_response"}])
    {'no_response': 1, 'teacher_wrong': 1}
    """
    return dict(sorted(Counter(d["reason"] for d in dropped).items()))


__all__ = ["ANSWER_CHOICES", "BASELINE_ARMS", "TEACHER_ARMS", "TeacherArms", "baseline_rows", "derangement",
           "dropped_counts", "freeform_summary", "load_responses", "worked_example"]
