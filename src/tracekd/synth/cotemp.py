"""Generate CoTemp-style co-temporal questions (native JSONL, one file per category).

  tracekd synth cotemp --n 1000 --seed 0 --out data/cotemp-synth
  tracekd build --dataset cotemp --data data/cotemp-synth --arms vanilla,correct,incorrect --out runs/synth

Each question is a small invented world: people, organisations, positions and teams (names made of
invented words, so no name is part of another), with time-stamped facts in CoTemp's surface forms
("X works for Y from A to B.", "X holds the position of Y in A.", "X is a member of the Y ...").
A question names an *anchor* fact ("While X was working for Y, which employer did Z work for at
the same time?"); its gold answers are every fact of the asked subject and relation whose time is
co-temporal with the anchor's, computed by interval logic; the category is how they relate to it:
``equal`` (same time), ``during`` (one within the other), ``overlap`` (partly), ``mix`` (several
answers relating in more than one way). The asked subject's other facts of that relation lie
outside the anchor's time, so they are not answers.

Dates are years, months or days ("1997", "March, 1997", "March 4, 1997"); every relation is chosen
so that it is the same whether a date is read as a point with unknown parts = 0 (Wikidata's order,
which CoTemp follows) or as the whole period it names - the generated data is unambiguous under
both (:mod:`tracekd.datasets.cotemp_rules`). All five ``triple_element`` kinds are generated
(``S1``/``S2``: the asked subject is / is not the anchor's; ``R1``/``R2``: same / other relation;
``O1``: the answers are the subjects sharing the anchor's object, "who also ...").

Output files ``equal.json``, ``overlap.json``, ``during.json``, ``mix.json`` (JSON Lines: ``index``,
``triple_element``, ``question``, ``facts``, ``answer``), readable by the CoTemp loader. Every row
is drawn from ``random.Random(f"{seed}:{category}:{index}")``: the same seed gives the same bytes,
and a row does not depend on ``--n``.
"""

from __future__ import annotations

import argparse
import calendar
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..datasets.cotemp_rules import Date, TimeExpr, interval_relation, label_of
from ..errors import ConfigError, did_you_mean
from ..io import clear_listed, manifest, sha256_file, write_json, write_text

HELP = "generate CoTemp-style questions whose answers follow from time-stamped facts"

CATEGORIES = ("equal", "overlap", "during", "mix")
TRIPLE_ELEMENTS = ("S1_R1_O2", "S1_R2_O2", "S2_R1_O1", "S2_R1_O2", "S2_R2_O2")
RELATIONS = ("position", "member", "work", "attend", "play")
SAME_TIME = ("during the same time period", "within the same time interval", "simultaneously",
             "concurrently", "at the same time", "during the same time span", "during the identical time period")
FIRST_NAMES = ("Ada", "Bruno", "Clara", "Dario", "Elin", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kaja",
               "Luca", "Maren", "Nils", "Olga", "Pavel", "Rosa", "Soren", "Tove", "Ugo", "Vera", "Wim",
               "Yara", "Zofia", "Åsa", "Émile", "Jürgen", "Łucja", "Nuño", "Søren")
_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "kl", "l", "m", "n", "p", "pr", "r", "s",
           "st", "t", "tr", "v", "z", "th")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ia", "ei", "é", "ø")
_CODAS = ("", "", "n", "r", "l", "s", "nd", "rt", "m")
_ORG_FORMS = {
    "work": ("{} Institute", "University of {}", "{} Laboratories", "{} Group", "{} Bank"),
    "attend": ("{} College", "{} Academy", "{} School of Law", "University of {}"),
    "member": ("{} Party", "{} Alliance", "Movement for {}", "{} People's Party"),
    "position": ("Governor of {}", "Mayor of {}", "Minister of {} Affairs", "President of the {} Council",
                 "Bishop of {}"),
    "play": ("{} F.C.", "{} Rovers", "{} United", "{} Athletic"),
}
_WHICH = {
    "work": ("which employer did {s} work for {t}?",),
    "position": ("which position did {s} hold {t}?",),
    "member": ("which political party did {s} belong to {t}?",),
    "attend": ("which school did {s} attend {t}?", "which school was {s} attending {t}?"),
    "play": ("which team did {s} play for {t}?",),
}
_WHO = {
    "work": "who also worked for {o} {t}?",
    "position": "who also held the position of {o} {t}?",
    "member": "who was also a member of {o} {t}?",
    "attend": "who also attended {o} {t}?",
    "play": "who was also playing for {o} {t}?",
}
_WHILE = {
    "work": "was working for {o}",
    "position": "was holding the position of {o}",
    "member": "was a member of {o}",
    "attend": "attended {o}",
    "play": "was playing for {o}",
}

Day = tuple[int, int, int]  # (year, month, day); month/day 0 = not stated


@dataclass(frozen=True)
class Time:
    """``in start`` (``span`` False, ``start == end``) or ``from start to end``."""

    start: Day
    end: Day
    span: bool

    def text(self) -> str:
        return f"from {render(self.start)} to {render(self.end)}" if self.span else f"in {render(self.start)}"


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str
    time: Time

    def text(self) -> str:
        t = self.time.text()
        if self.relation == "position":
            return f"{self.subject} holds the position of {self.object} {t}."
        if self.relation == "member":
            return f"{self.subject} is a member of the {self.object} {t}."
        if self.relation == "work":
            return f"{self.subject} {'works' if self.time.span else 'worked'} for {self.object} {t}."
        if self.relation == "attend":
            return f"{self.subject} attended {self.object} {t}."
        return f"{self.subject} plays for {self.object} {t}."


def render(d: Day) -> str:
    """CoTemp's date forms.

    >>> render((1997, 0, 0)), render((1997, 3, 0)), render((1997, 3, 4))
    ('1997', 'March, 1997', 'March 4, 1997')
    """
    y, m, day = d
    return str(Date(y, m or None, day or None))


# ---------------------------------------------------------------------------------------------
# interval logic: the classifier's (tracekd.datasets.cotemp_rules); the tests re-derive it independently


def _expr(t: Time) -> TimeExpr:
    """The classifier's time expression of ``t`` (a 0 month or day is one not stated)."""
    start, end = (Date(y, m or None, d or None) for y, m, d in (t.start, t.end))
    return TimeExpr(start, end, t.span)


def _bounds(t: Time, semantics: str) -> tuple[Day, Day]:
    return _expr(t).interval(semantics)


def relation(a: Time, b: Time, semantics: str = "wikidata") -> str:
    """equal / during / overlap / disjoint between two times (symmetric).

    >>> relation(Time((1990, 0, 0), (2000, 0, 0), True), Time((1995, 0, 0), (1995, 0, 0), False))
    'during'
    """
    return interval_relation(_bounds(a, semantics), _bounds(b, semantics))


def ordered(t: Time) -> bool:
    """Whether a time ends no earlier than it starts under both readings of its dates.

    >>> ordered(Time((1905, 10, 1), (1905, 6, 0), True)), ordered(Time((1905, 0, 0), (1905, 6, 0), True))
    (False, True)
    """
    (w0, w1), (c0, _), (_, c1) = (t.start, t.end), _bounds(Time(t.start, t.start, False), "calendar"), \
        _bounds(Time(t.end, t.end, False), "calendar")
    return w0 <= w1 and c0 <= c1


def _relation_both(a: Time, b: Time) -> str | None:
    """The relation when both readings of the dates agree on it, else None."""
    r = relation(a, b, "wikidata")
    return r if r == relation(a, b, "calendar") else None


# ---------------------------------------------------------------------------------------------
# drawing


class _World:
    """Fresh names for one question: every invented word is used once."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def word(self) -> str:
        while True:
            n = self.rng.choice((2, 2, 3))
            w = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                        for _ in range(n))
            w = w.capitalize()
            if w not in self.used and len(w) >= 4:
                self.used.add(w)
                return w

    def person(self) -> str:
        return f"{self.rng.choice(FIRST_NAMES)} {self.word()}"

    def entity(self, rel: str) -> str:
        return self.rng.choice(_ORG_FORMS[rel]).format(self.word())


def _date(rng: random.Random, year: int) -> Day:
    g = rng.random()
    if g < 0.5:
        return (year, 0, 0)
    month = rng.randint(1, 12)
    if g < 0.7:
        return (year, month, 0)
    return (year, month, rng.randint(1, calendar.monthrange(year, month)[1]))


def _span(rng: random.Random, y0: int, y1: int) -> Time:
    """``from y0 to y1`` at random granularities; ``y1`` is moved past ``y0`` when not after it, so a
    span never ends before it starts under either reading."""
    return Time(_date(rng, y0), _date(rng, max(y1, y0 + 1)), True)


def _anchor_time(rng: random.Random, category: str) -> Time:
    if category in ("equal", "during") and rng.random() < 0.15:
        d = _date(rng, rng.randint(1900, 2015))
        return Time(d, d, False)
    y0 = rng.randint(1900, 2005)
    return _span(rng, y0, y0 + rng.randint(3, 18))


def _related_time(rng: random.Random, anchor: Time, want: str) -> Time:
    """A time that relates to ``anchor`` as ``want`` (equal/during/overlap/disjoint), by year margins
    or by sharing one of the anchor's exact dates; the caller checks both readings."""
    a0, a1 = anchor.start[0], anchor.end[0]
    if want == "equal":
        return anchor
    if want == "disjoint":
        if rng.random() < 0.5:
            y1 = a0 - rng.randint(1, 15)
            return _span(rng, y1 - rng.randint(0, 10), y1) if rng.random() < 0.7 else Time(*(2 * (_date(rng, y1),)), False)
        y0 = a1 + rng.randint(1, 15)
        return _span(rng, y0, y0 + rng.randint(0, 10)) if rng.random() < 0.7 else Time(*(2 * (_date(rng, y0),)), False)
    if want == "during":
        inside = anchor.span and a1 - a0 >= 2 and rng.random() < 0.5
        if inside:  # the answer within the anchor
            y0 = rng.randint(a0 + 1, a1 - 1)
            if rng.random() < 0.3:
                return Time(*(2 * (_date(rng, y0),)), False)
            y1 = rng.randint(y0, a1 - 1)
            start = anchor.start if rng.random() < 0.2 else _date(rng, y0)
            end = anchor.end if rng.random() < 0.2 and start != anchor.start else _date(rng, y1)
            if start == anchor.start and end == anchor.end:
                end = _date(rng, y1)
            return Time(start, end, True)
        # the anchor within the answer
        start = anchor.start if anchor.span and rng.random() < 0.2 else _date(rng, a0 - rng.randint(1, 12))
        end = _date(rng, a1 + rng.randint(1, 12)) if start == anchor.start or rng.random() < 0.8 else anchor.end
        if not anchor.span and end == anchor.end:
            end = _date(rng, a1 + rng.randint(1, 12))
        return Time(start, end, True)
    if want == "overlap":
        if rng.random() < 0.5:  # starts before, ends inside
            return _span(rng, a0 - rng.randint(1, 12), rng.randint(a0 + 1, a1 - 1))
        return _span(rng, rng.randint(a0 + 1, a1 - 1), a1 + rng.randint(1, 12))
    raise ValueError(want)


def _mix_relations(rng: random.Random, k: int, anchor: Time) -> list[str]:
    kinds = ["equal", "during", "overlap"] if anchor.span else ["equal", "during"]
    while True:
        rels = [rng.choice(kinds) for _ in range(k)]
        if len(set(rels)) > 1:
            return rels


def _draw_time(rng: random.Random, anchor: Time, want: str) -> Time:
    for _ in range(100):
        t = _related_time(rng, anchor, want)
        if ordered(t) and _relation_both(t, anchor) == want:
            return t
    raise RuntimeError(f"could not draw a {want} time for {anchor}")  # pragma: no cover


def make_question(category: str, rng: random.Random, index: int = 0) -> dict:
    """One CoTemp row of ``category`` drawn from ``rng``."""
    world = _World(rng)
    te = rng.choice(TRIPLE_ELEMENTS)
    anchor_rel = rng.choice(RELATIONS)
    same_subject, same_rel, asks_subject = te.startswith("S1"), te[3:5] == "R1", te.endswith("O1")
    target_rel = anchor_rel if same_rel else rng.choice([r for r in RELATIONS if r != anchor_rel])
    anchor_subject = world.person()
    target_subject = anchor_subject if same_subject else world.person()
    anchor_obj = world.entity(anchor_rel)
    a_time = _anchor_time(rng, category)
    anchor = Fact(anchor_subject, anchor_rel, anchor_obj, a_time)

    k = rng.choices((1, 2, 3, 4), weights=(70, 22, 6, 2))[0] if category != "mix" else rng.choices((2, 3, 4), weights=(70, 20, 10))[0]
    if category == "mix":
        wants = _mix_relations(rng, k, a_time)
    elif category == "overlap" and not a_time.span:  # pragma: no cover - _anchor_time never does this
        raise AssertionError("overlap needs a span anchor")
    else:
        wants = [category] * k
    answers: list[Fact] = []
    for want in wants:
        t = _draw_time(rng, a_time, want)
        if asks_subject:
            answers.append(Fact(world.person(), anchor_rel, anchor_obj, t))
        else:
            answers.append(Fact(target_subject, target_rel, world.entity(target_rel), t))
    # the asked-about subject/relation at other times: not answers
    distractors: list[Fact] = []
    for _ in range(rng.randint(2, 4)):
        t = _draw_time(rng, a_time, "disjoint")
        if asks_subject:
            distractors.append(Fact(world.person(), anchor_rel, anchor_obj, t))
        else:
            distractors.append(Fact(target_subject, target_rel, world.entity(target_rel), t))
    # noise: other relations of the people involved, never the asked (subject, relation)
    people = [anchor_subject] + ([] if same_subject else [target_subject]) + [world.person()]
    noise: list[Fact] = []
    for _ in range(rng.randint(8, 14) - 1 - len(answers) - len(distractors)):
        subject = rng.choice(people)
        rels = [r for r in RELATIONS if asks_subject or not (subject == target_subject and r == target_rel)]
        rel = rng.choice(rels)
        y0 = rng.randint(1890, 2020)
        t = _span(rng, y0, y0 + rng.randint(0, 15)) if rng.random() < 0.6 else Time(*(2 * (_date(rng, y0),)), False)
        noise.append(Fact(subject, rel, world.entity(rel), t))
    facts = [anchor, *answers, *distractors, *noise]
    if not all(ordered(f.time) for f in facts):  # pragma: no cover - _draw_time and _span guarantee it
        raise AssertionError(f"a span ends before it starts ({category}, index {index})")
    rng.shuffle(facts)

    # gold answers by interval logic over the asked (subject, relation) facts
    if asks_subject:
        asked = [f for f in facts if f is not anchor and f.relation == anchor_rel and f.object == anchor_obj]
        gold = [f.subject for f in asked if _relation_both(f.time, a_time) not in (None, "disjoint")]
    else:
        asked = [f for f in facts if f is not anchor and f.subject == target_subject and f.relation == target_rel]
        gold = [f.object for f in asked if _relation_both(f.time, a_time) not in (None, "disjoint")]
    got = label_of(relation(f.time, a_time) for f in asked)
    if got != category or len(gold) != len(answers):  # pragma: no cover - construction guarantees it
        raise AssertionError(f"generated {got} for {category} (index {index})")

    t = rng.choice(SAME_TIME)
    head = f"While {anchor_subject} {_WHILE[anchor_rel].format(o=anchor_obj)}, "
    if asks_subject:
        tail = _WHO[anchor_rel].format(o=anchor_obj, t=t)
    else:
        tail = rng.choice(_WHICH[target_rel]).format(s=target_subject, t=t)
    return {"index": index, "triple_element": te, "question": head + tail,
            "facts": [f.text() for f in facts], "answer": gold}


def generate(n: int, seed: int = 0, categories: tuple[str, ...] = CATEGORIES) -> dict[str, list[dict]]:
    """``n`` rows per category, deterministic in ``seed``: {category: [row, ...]}.

    >>> rows = generate(2, seed=7)
    >>> [len(rows[c]) for c in CATEGORIES], rows == generate(2, seed=7)
    ([2, 2, 2, 2], True)
    >>> sorted(rows["mix"][0])
    ['answer', 'facts', 'index', 'question', 'triple_element']
    """
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise ConfigError(did_you_mean(unknown[0], CATEGORIES, "CoTemp category"))
    return {c: [make_question(c, random.Random(f"{seed}:{c}:{i}"), i) for i in range(n)] for c in categories}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=1000, help="questions per category (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--out", required=True, help="output folder (equal.json, overlap.json, during.json, mix.json); "
                        "refused when not empty, unless --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder: delete the files its manifest.json lists "
                             "(an earlier synth's), keep anything else")
    parser.add_argument("--categories", default=",".join(CATEGORIES),
                        help="comma-separated categories (default: %(default)s)")


def write_cotemp(out_dir, n: int, seed: int = 0, categories: tuple[str, ...] = CATEGORIES,
                 overwrite: bool = False) -> dict:
    """Write one native JSONL file per category plus ``manifest.json`` into ``out_dir``; return the manifest.

    A non-empty ``out_dir`` is refused unless ``overwrite``, which first deletes the files its
    manifest lists (an earlier synth's) and nothing else; files kept are named in ``m["kept"]``.
    """
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    rows = generate(n, seed, categories)
    out = Path(out_dir)
    kept = clear_listed(out, overwrite, "synth output folder", kind="synth-")
    for c, items in rows.items():
        write_text(out / f"{c}.json", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))
    m = manifest(kind="synth-cotemp", config={"n": n, "categories": list(categories)}, seed=seed,
                 files={f"{c}.json": sha256_file(out / f"{c}.json") for c in rows})
    write_json(out / "manifest.json", m)
    m["kept"] = kept
    return m


def write_from_spec(spec: dict, out_dir, overwrite: bool = False) -> dict:
    """:func:`write_cotemp` from an experiment's ``synth:`` entry (``n``, ``seed``); the loader splits 80/20."""
    return write_cotemp(out_dir, n=spec["n"], seed=spec.get("seed", 0), overwrite=overwrite)


def run(args: argparse.Namespace) -> int:
    cats = tuple(c.strip() for c in args.categories.split(",") if c.strip())
    m = write_cotemp(args.out, args.n, args.seed, cats, overwrite=args.overwrite)
    print(f"wrote {args.n * len(cats):,} questions ({args.n:,} per category) to {args.out}")
    if m["kept"]:
        print(f"note: kept {len(m['kept'])} file(s) not written by tracekd synth: {', '.join(m['kept'])}")
    return 0
