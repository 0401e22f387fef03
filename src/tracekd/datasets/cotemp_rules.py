"""CoTemp QA's relation step computed from the facts, by rules (audited in :mod:`tracekd.datasets.cotemp_audit`).

The dataset names each question's category (``equal``, ``overlap``, ``during``, ``mix``) by its file;
this module derives it from the text alone:

1. **Time expressions.** Every fact ends in ``in D`` or ``from D to D``, where ``D`` is ``2002``,
   ``December, 2019`` or ``October 24, 2019`` (:func:`parse_time`); each date keeps its stated
   granularity (year, month or day).
2. **The anchor fact** is the fact the question's ``While S <relation> O, ...`` clause names: same
   subject, relation and object (``the`` before an object ignored, names compared after
   :func:`tracekd.text.normalize_text`). A few questions name a subject/relation/object that
   several facts share (two terms of office): every such fact is an anchor.
3. **Answer facts.** For each gold answer, the facts stating it: for ``who ...`` questions
   (``triple_element`` ``S2_R1_O1``) the facts whose *subject* is the answer and whose object is the
   anchor's; otherwise the facts whose *object* is the answer and whose subject is the one the main
   clause asks about (the anchor's for ``S1_*``); a relation-free match, then any fact mentioning
   the answer, when that finds nothing (``reason`` says so). A point fact (``in D``) of an answer
   lying inside one of the same answer's spans restates part of it and is ignored.
4. **Relations.** Each answer fact's interval is compared with the anchor's: ``equal`` (same start
   and end), ``during`` (one within the other, ends may touch, not equal), ``overlap`` (they
   intersect, neither within the other), ``disjoint``. Disjoint pairs are ignored (an answer fact of
   another period); an answer with no other relation leaves the question unclassified.
5. **The label** is the one relation all answers have, or ``mix`` when they (or an answer's facts)
   relate in more than one way.

Which intervals? The data pins this down. CoTemp was built from Wikidata, whose timestamps write
unknown parts as zeros (``+2002-00-00``); the categories fit comparing such timestamps as written,
where a year-precision date sorts *before* every month of that year and a span's end ``2002`` lies
before ``March, 2002``. Semantics ``wikidata`` (the default) compares that way: a date is the point
``(year, month or 0, day or 0)``. Semantics ``calendar`` reads each date as the whole period it
names (``2002`` = Jan 1 - Dec 31, 2002). On the shared data (2,685 questions) ``wikidata`` agrees
with the dataset's category on 2,670 (99.4%), ``calendar`` on 2,584 (96.2%); ``tracekd audit
cotemp DATA_DIR`` prints the table and every disagreement with its reason. Of the 15 left, 11 are
``mix`` questions whose answers all relate one way by the facts shown (several reuse one person's
facts: John von Neumann's three employers, all containing the anchor, are ``overlap`` for one
anchor and ``mix`` for a near-identical one), which no rule over these facts can reproduce.

>>> facts = ["Ann works for Acme from 1990 to 1995.", "Ann works for Bolt from 1992 to 1993.",
...          "Ann works for Cord from 1994 to 1999.", "Ann works for Dune in 1980."]
>>> verdict = classify_question("While Ann was working for Acme, which employer did Ann work for "
...                             "during the same time period?", facts, ["Bolt", "Cord"], "S1_R1_O2")
>>> verdict.label, verdict.anchor, verdict.relations
('mix', (0,), {'Bolt': ('during',), 'Cord': ('overlap',)})
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..errors import ConfigError, did_you_mean
from ..text import mentions, normalize_text

CATEGORIES = ("equal", "overlap", "during", "mix")
RELATIONS = ("equal", "during", "overlap", "disjoint")
SEMANTICS = ("wikidata", "calendar")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
_MONTH = "|".join(MONTHS)
_DATE = rf"(?:(?:{_MONTH})(?: \d{{1,2}})?, )?\d{{1,4}}"
_DATE_RX = re.compile(rf"(?:(?P<month>{_MONTH})(?: (?P<day>\d{{1,2}}))?, )?(?P<year>\d{{1,4}})")
_TIME_AT_END = re.compile(rf" (?:in (?P<at>{_DATE})|from (?P<start>{_DATE}) to (?P<end>{_DATE}))\s*\.?\s*$")
_TIME_WORDS = frozenset(
    "in from to until till since circa c. around about approximately early late mid the of and or between "
    "on by before after during ad bc bce ce century".split()) | {m.lower() for m in MONTHS}
_PREPOSITION = re.compile(r" (?=(?:in|from|since|until|till|circa|c\.|around|about|between|on|by|before|after|during) )")

#: relation phrase in a fact -> relation name (longest phrases first where one prefixes another)
FACT_RELATIONS: tuple[tuple[str, str], ...] = (
    ("holds the position of", "position"), ("held the position of", "position"),
    ("is a member of the", "member"), ("was a member of the", "member"),
    ("is a member of", "member"), ("was a member of", "member"),
    ("is the chair of", "chair"), ("was the chair of", "chair"),
    ("is the head of", "head"), ("was the head of", "head"),
    ("is owned by", "owned"), ("was owned by", "owned"),
    ("attended", "attend"), ("attends", "attend"),
    ("works for", "work"), ("worked for", "work"),
    ("plays for", "play"), ("played for", "play"),
)
_FACT_RELATION = re.compile(
    "(?<=.) (" + "|".join(re.escape(p) for p, _ in sorted(FACT_RELATIONS, key=lambda x: -len(x[0]))) + ") ")
#: relation phrase in the question's "While ..." clause -> relation name
WHILE_RELATIONS: tuple[tuple[str, str], ...] = (
    ("was holding the position of", "position"), ("held the position of", "position"),
    ("was a member of the", "member"), ("was a member of", "member"),
    ("was the chair of", "chair"), ("was the head of", "head"),
    ("was owned by", "owned"), ("was attending", "attend"), ("attended", "attend"),
    ("was working for", "work"), ("worked for", "work"),
    ("was playing for", "play"), ("played for", "play"),
)
#: the noun of "which NOUN did X ..." -> the relation asked about
TARGET_NOUNS = {"employer": "work", "position": "position", "political party": "member", "party": "member",
                "school": "attend", "team": "play", "club": "play", "owner": "owned"}
_WHILE = re.compile(
    r"^\s*While (?P<s>.+?) (?P<r>" + "|".join(re.escape(p) for p, _ in WHILE_RELATIONS)
    + r") (?P<o>.+?), (?P<rest>(?:which|who|what)\b.*)$", re.DOTALL)
_WHICH = re.compile(r"^which (?P<noun>" + "|".join(sorted(TARGET_NOUNS, key=len, reverse=True)) + r")\b")
_WHO_REL = (("position", "position"), ("member", "member"), ("work", "work"), ("attend", "attend"),
            ("play", "play"), ("owned", "owned"), ("chair", "chair"), ("head", "head"))


# ---------------------------------------------------------------------------------------------
# time expressions


@dataclass(frozen=True)
class Date:
    """A date at its stated granularity (``month``/``day`` None when not stated)."""

    year: int
    month: int | None = None
    day: int | None = None

    @property
    def granularity(self) -> str:
        return "day" if self.day is not None else "month" if self.month is not None else "year"

    def point(self) -> tuple[int, int, int]:
        """Wikidata order: unknown parts are 0, so ``2002`` < ``January, 2002`` < ``January 1, 2002``."""
        return (self.year, self.month or 0, self.day or 0)

    def first_day(self) -> tuple[int, int, int]:
        return (self.year, self.month or 1, self.day or 1)

    def last_day(self) -> tuple[int, int, int]:
        month = self.month or 12
        day = self.day or calendar.monthrange(self.year, month)[1]
        return (self.year, month, day)

    def __str__(self) -> str:
        """CoTemp's surface form.

        >>> str(Date(2019, 10, 24)), str(Date(2019, 12)), str(Date(2002))
        ('October 24, 2019', 'December, 2019', '2002')
        """
        if self.month is None:
            return str(self.year)
        if self.day is None:
            return f"{MONTHS[self.month - 1]}, {self.year}"
        return f"{MONTHS[self.month - 1]} {self.day}, {self.year}"


@dataclass(frozen=True)
class TimeExpr:
    """``in D`` (``start == end``) or ``from D1 to D2``."""

    start: Date
    end: Date
    span: bool  # True for "from ... to ...", False for "in ..."

    @property
    def inverted(self) -> bool:
        """A span whose end period is over before its start period begins (a data error).

        >>> parse_time("from June 11, 1970 to 1970").inverted, parse_time("from 2020 to 1993").inverted
        (False, True)
        """
        return self.end.last_day() < self.start.first_day()

    def interval(self, semantics: str = "wikidata") -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``(lo, hi)`` as ``(year, month, day)`` tuples under ``semantics`` (see the module docstring).

        >>> t = parse_time("from 1997 to March, 2001")
        >>> t.interval("wikidata")
        ((1997, 0, 0), (2001, 3, 0))
        >>> t.interval("calendar")
        ((1997, 1, 1), (2001, 3, 31))
        """
        if semantics == "wikidata":
            return self.start.point(), self.end.point()
        if semantics == "calendar":
            return self.start.first_day(), self.end.last_day()
        raise ConfigError(did_you_mean(str(semantics), SEMANTICS, "time semantics"))

    def __str__(self) -> str:
        return f"from {self.start} to {self.end}" if self.span else f"in {self.start}"


def parse_date(text: str) -> Date:
    """``2002`` / ``December, 2019`` / ``October 24, 2019`` -> Date; ValueError when it is none.

    >>> parse_date("October 24, 2019")
    Date(year=2019, month=10, day=24)
    >>> parse_date("February 30, 2019")
    Traceback (most recent call last):
    ...
    ValueError: no such day: 'February 30, 2019'
    """
    m = _DATE_RX.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a date: {text!r}")
    year = int(m["year"])
    month = MONTHS.index(m["month"]) + 1 if m["month"] else None
    day = int(m["day"]) if m["day"] else None
    if year < 1 or (day is not None and not 1 <= day <= calendar.monthrange(year, month)[1]):
        raise ValueError(f"no such day: {text!r}")
    return Date(year, month, day)


def parse_time(text: str) -> TimeExpr:
    """``in D`` or ``from D1 to D2`` -> TimeExpr (granularity kept); ValueError otherwise.

    >>> parse_time("in December, 2019")
    TimeExpr(start=Date(year=2019, month=12, day=None), end=Date(year=2019, month=12, day=None), span=False)
    >>> str(parse_time("from January 2, 2007 to December 3, 2010"))
    'from January 2, 2007 to December 3, 2010'
    >>> parse_time("from 2001 to 1997").inverted   # parsed; the data has a few such spans
    True
    >>> parse_time("since 2001")
    Traceback (most recent call last):
    ...
    ValueError: not a time expression: 'since 2001'
    """
    text = text.strip().rstrip(".")
    m = re.fullmatch(rf"in ({_DATE})|from ({_DATE}) to ({_DATE})", text)
    if not m:
        raise ValueError(f"not a time expression: {text!r}")
    if m[1]:
        d = parse_date(m[1])
        return TimeExpr(d, d, False)
    return TimeExpr(parse_date(m[2]), parse_date(m[3]), True)


# ---------------------------------------------------------------------------------------------
# facts and questions


@dataclass(frozen=True)
class Fact:
    """A parsed fact: ``subject relation object time``; parts are None where parsing failed."""

    index: int
    text: str
    subject: str | None
    relation: str | None
    object: str | None
    time: TimeExpr | None
    time_text: str | None = None  # the trailing time expression as written, also when unparseable


@functools.lru_cache(maxsize=1 << 16)
def _parse_fact(text: str) -> Fact:
    return parse_fact(text)


def parse_fact(text: str, index: int = 0) -> Fact:
    """Split a CoTemp fact into subject, relation, object and time expression.

    >>> f = parse_fact("Emma Carlsson Löfdahl is a member of the Liberals in March 11, 2019.")
    >>> f.subject, f.relation, f.object, str(f.time)
    ('Emma Carlsson Löfdahl', 'member', 'Liberals', 'in March 11, 2019')
    >>> f = parse_fact("Ann works for Made in Denmark from 2013 to 2019.")
    >>> f.object, str(f.time)
    ('Made in Denmark', 'from 2013 to 2019')
    >>> parse_fact("Ann works for Acme since 2010.").time is None
    True
    """
    m = _TIME_AT_END.search(text)
    time = None
    time_text = None
    if m:
        body = text[:m.start()]
        time_text = m.group(0).strip().rstrip(".")
        try:
            time = parse_time(time_text)
        except ValueError:
            time = None
    else:
        body, time_text = _split_time_loose(text)
    subject = relation = obj = None
    r = _FACT_RELATION.search(body)  # leftmost phrase; the longest where several start there
    if r:
        relation = dict(FACT_RELATIONS)[r[1]]
        subject = body[:r.start()].strip()
        obj = body[r.end():].strip()
    return Fact(index, text, subject, relation, obj, time, time_text)


def _split_time_loose(text: str) -> tuple[str, str | None]:
    """``(body, time text)`` of a fact whose time is not in CoTemp's forms: cut at the first
    preposition from which every word to the end is time-like (numbers, months, prepositions).

    >>> _split_time_loose("Ann works for Acme from 1990 until the 2000s.")
    ('Ann works for Acme', 'from 1990 until the 2000s')
    >>> _split_time_loose("Ann holds the position of Lords of Appeal in Ordinary circa 1945.")
    ('Ann holds the position of Lords of Appeal in Ordinary', 'circa 1945')
    >>> _split_time_loose("Ann works for Acme.")
    ('Ann works for Acme', None)
    """
    stripped = text.strip().rstrip(".").rstrip()
    for m in _PREPOSITION.finditer(stripped):
        tail = stripped[m.end():]
        words = tail.replace(",", " ").replace("-", " ").lower().split()
        if any(ch.isdigit() for ch in tail) and all(
                w in _TIME_WORDS or re.fullmatch(r"\d+(?:s|st|nd|rd|th)?", w) for w in words):
            return stripped[:m.start()], tail
    return stripped, None


@dataclass(frozen=True)
class Question:
    """The parts of a ``While S rel O, which/who ...?`` question."""

    subject: str
    relation: str
    object: str
    rest: str
    asks_subject: bool  # "who also ...": the answers are subjects
    target_relation: str | None


def parse_question(question: str) -> Question | None:
    """The anchor's subject/relation/object and what the main clause asks; None if no match.

    >>> q = parse_question("While Jan Trøjborg was working for Billund Airport, which employer did "
    ...                    "Jan Trøjborg work for during the same time span?")
    >>> q.subject, q.relation, q.object, q.asks_subject, q.target_relation
    ('Jan Trøjborg', 'work', 'Billund Airport', False, 'work')
    >>> parse_question("While Heidi Allen was a member of Change UK, who was also a member of "
    ...                "Change UK during the same time span?").asks_subject
    True
    """
    m = _WHILE.match(question)
    if not m:
        return None
    relation = dict(WHILE_RELATIONS)[m["r"]]
    rest = m["rest"].strip()
    if rest.startswith("who"):
        target = next((rel for key, rel in _WHO_REL if key in rest), relation)
        return Question(m["s"].strip(), relation, m["o"].strip(), rest, True, target)
    w = _WHICH.match(rest)
    return Question(m["s"].strip(), relation, m["o"].strip(), rest, False,
                    TARGET_NOUNS[w["noun"]] if w else None)


@functools.lru_cache(maxsize=1 << 16)
def _name(s: str | None) -> str:
    """A name for comparison: normalised, a leading ``the`` dropped."""
    n = normalize_text(s or "")
    return n[4:] if n.startswith("the ") else n


# ---------------------------------------------------------------------------------------------
# relations


def interval_relation(a: tuple, b: tuple) -> str:
    """How interval ``a = (lo, hi)`` relates to ``b``: equal, during (either within the other),
    overlap, or disjoint. Symmetric.

    >>> interval_relation((1, 5), (1, 5)), interval_relation((2, 3), (1, 5)), interval_relation((1, 5), (1, 9))
    ('equal', 'during', 'during')
    >>> interval_relation((1, 5), (4, 9)), interval_relation((1, 3), (4, 9)), interval_relation((1, 4), (4, 9))
    ('overlap', 'disjoint', 'overlap')
    """
    (a0, a1), (b0, b1) = a, b
    if a0 == b0 and a1 == b1:
        return "equal"
    if a1 < b0 or b1 < a0:
        return "disjoint"
    if (b0 <= a0 and a1 <= b1) or (a0 <= b0 and b1 <= a1):
        return "during"
    return "overlap"


def label_of(relations: Iterable[str]) -> str | None:
    """The category of a question whose answers relate to the anchor by ``relations``.

    >>> label_of(["during", "during"]), label_of(["during", "overlap"]), label_of([])
    ('during', 'mix', None)
    """
    kinds = {r for r in relations if r != "disjoint"}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mix"


@dataclass(frozen=True)
class RuleVerdict:
    """The rules' category for one question (``label`` None when they cannot tell) and why.

    ``anchor``: indices of the anchor fact(s); ``answer_facts``: answer -> indices of the facts used;
    ``relations``: answer -> the relations found (disjoint ones left out); ``unparsed``: indices of
    facts whose time expression could not be parsed; ``inverted``: indices of facts whose span ends
    before it starts (parsed and used as written).
    """

    label: str | None
    reason: str
    anchor: tuple[int, ...] = ()
    answer_facts: dict = field(default_factory=dict)
    relations: dict = field(default_factory=dict)
    unparsed: tuple[int, ...] = ()
    inverted: tuple[int, ...] = ()


def _answer_facts(answer: str, q: Question | None, anchors: list[Fact], facts: list[Fact],
                  triple_element: str | None) -> tuple[list[Fact], str]:
    """The facts stating ``answer``, and how they were found ("" = by the question's structure).

    With one anchor it is never an answer fact; with several, one term may be an answer to another.
    """
    a = _name(answer)
    anchor_ids = {f.index for f in anchors}
    others = [f for f in facts if f.index not in anchor_ids or len(anchors) > 1]
    te = (triple_element or "").upper()
    asks_subject = (q.asks_subject if q else False) or te.endswith("O1")
    if asks_subject:
        objs = {_name(f.object) for f in anchors}
        rels = {f.relation for f in anchors}
        tiers = [
            ("", lambda f: _name(f.subject) == a and _name(f.object) in objs and f.relation in rels),
            ("relation ignored", lambda f: _name(f.subject) == a and _name(f.object) in objs),
        ]
    else:
        subj = None
        if te.startswith("S1") and anchors:
            subj = _name(anchors[0].subject)
        elif q is not None:
            # the subject the main clause names: the longest fact subject written in it
            rest = normalize_text(q.rest)
            named = sorted({_name(f.subject) for f in facts if f.subject and mentions(rest, _name(f.subject))},
                           key=len, reverse=True)
            subj = named[0] if named else None
        rel = q.target_relation if q and q.target_relation else None
        if rel is None and te[3:5] == "R1" and anchors:
            rel = anchors[0].relation
        tiers = [
            ("", lambda f: _name(f.object) == a and (subj is None or _name(f.subject) == subj)
             and (rel is None or f.relation == rel)),
            ("relation ignored", lambda f: _name(f.object) == a and (subj is None or _name(f.subject) == subj)),
        ]
    tiers.append(("object or subject match", lambda f: a in (_name(f.object), _name(f.subject))))
    tiers.append(("mention", lambda f: f.index not in anchor_ids and mentions(normalize_text(f.text), a)))
    for note, keep in tiers:
        found = [f for f in others if keep(f)]
        if found:
            return found, note
    return [], "no fact states it"


def _drop_restated_points(found: list[Fact], semantics: str) -> list[Fact]:
    """Drop an answer's point facts lying inside one of its own spans (they restate part of it)."""
    spans = [f.time.interval(semantics) for f in found if f.time and f.time.span]
    if not spans:
        return found
    keep = []
    for f in found:
        if f.time and not f.time.span:
            lo, hi = f.time.interval(semantics)
            if any(s0 <= lo and hi <= s1 for s0, s1 in spans):
                continue
        keep.append(f)
    return keep


def classify_question(question: str, facts: Sequence[str], answers: Sequence[str],
                      triple_element: str | None = None, semantics: str = "wikidata") -> RuleVerdict:
    """The category of a CoTemp question computed from its facts (see the module docstring).

    ``label`` is None, with the reason, when the anchor or an answer's fact cannot be found, a
    time expression cannot be parsed, or an answer is not co-temporal with the anchor.

    >>> facts = ["Bo plays for Reds in 2001.", "Cy plays for Reds in 2001.", "Di plays for Reds in 1999."]
    >>> verdict = classify_question("While Bo was playing for Reds, who was also playing for Reds "
    ...                             "simultaneously?", facts, ["Cy"], "S2_R1_O1")
    >>> verdict.label, verdict.answer_facts
    ('equal', {'Cy': (1,)})
    >>> classify_question("Who?", facts, ["Cy"]).reason
    "question does not match 'While S <relation> O, which/who ...'"
    """
    if semantics not in SEMANTICS:
        raise ConfigError(did_you_mean(str(semantics), SEMANTICS, "time semantics"))
    parsed = []
    for i, t in enumerate(facts):
        f = _parse_fact(t)
        parsed.append(Fact(i, f.text, f.subject, f.relation, f.object, f.time, f.time_text))
    unparsed = tuple(f.index for f in parsed if f.time is None)
    inverted = tuple(f.index for f in parsed if f.time is not None and f.time.inverted)
    verdict = _classify(question, parsed, answers, triple_element, semantics)
    return dataclasses.replace(verdict, unparsed=unparsed, inverted=inverted)


def _classify(question: str, parsed: list[Fact], answers: Sequence[str], triple_element: str | None,
              semantics: str) -> RuleVerdict:
    unparsed = ()
    q = parse_question(question)
    if q is None:
        return RuleVerdict(None, "question does not match 'While S <relation> O, which/who ...'", unparsed=unparsed)
    s, o = _name(q.subject), _name(q.object)
    anchors = [f for f in parsed if _name(f.subject) == s and _name(f.object) == o and f.relation == q.relation]
    if not anchors:
        anchors = [f for f in parsed if _name(f.subject) == s and _name(f.object) == o]
    if not anchors:
        return RuleVerdict(None, f"no fact matches the anchor {q.subject!r} {q.relation} {q.object!r}",
                           unparsed=unparsed)
    anchor_ids = tuple(f.index for f in anchors)
    bad = [f for f in anchors if f.time is None]
    if bad:
        return RuleVerdict(None, f"anchor time expression unparsed: {bad[0].time_text!r}", anchor_ids,
                           unparsed=unparsed)
    used: dict[str, tuple[int, ...]] = {}
    found_rel: dict[str, tuple[str, ...]] = {}
    notes = []
    for answer in answers:
        found, note = _answer_facts(answer, q, anchors, parsed, triple_element)
        if note:
            notes.append(f"{answer!r}: {note}")
        if not found:
            return RuleVerdict(None, f"no fact states the answer {answer!r}", anchor_ids, used, found_rel, unparsed)
        bad = [f for f in found if f.time is None]
        if bad:
            return RuleVerdict(None, f"answer {answer!r}: time expression unparsed: {bad[0].time_text!r}",
                               anchor_ids, used, found_rel, unparsed)
        found = _drop_restated_points(found, semantics)
        rels = []
        for f in found:
            for an in anchors:
                if f.index == an.index:
                    continue
                r = interval_relation(f.time.interval(semantics), an.time.interval(semantics))
                if r != "disjoint" and r not in rels:
                    rels.append(r)
        used[answer] = tuple(f.index for f in found)
        found_rel[answer] = tuple(sorted(rels, key=RELATIONS.index))
        if not rels:
            return RuleVerdict(None, f"answer {answer!r} is not co-temporal with the anchor "
                                     f"({', '.join(str(f.time) for f in found)} vs "
                                     f"{', '.join(str(an.time) for an in anchors)})",
                               anchor_ids, used, found_rel, unparsed)
    label = label_of(r for rs in found_rel.values() for r in rs)
    counts = Counter(r for rs in found_rel.values() for r in rs)
    reason = "answers relate to the anchor as " + ", ".join(f"{r} ({counts[r]})" for r in RELATIONS if counts[r])
    if len(anchors) > 1:
        reason += f"; {len(anchors)} anchor facts"
    if notes:
        reason += "; loose match for " + "; ".join(notes)
    return RuleVerdict(label, reason, anchor_ids, used, found_rel, unparsed)
