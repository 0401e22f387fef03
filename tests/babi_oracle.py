"""An independent checker for bAbI text: parse it, re-derive every answer from the sentences.

Written apart from ``tracekd.synth`` and never importing it: its own parser and its own simple
rules per task, read straight off the sentences. It also checks the real bAbI files, which keeps it
honest (see tests/test_synth_babi.py).

``solve(task, sentences, question)`` returns the answer, or None when the sentences do not fix
one. ``strict=True`` (for whole stories) also rejects sentences that contradict each other
(dropping an object one does not hold, two shapes in one cell, a size cycle, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class Inconsistent(Exception):
    """The story contradicts itself."""


@dataclass
class Parsed:
    sentences: list[tuple[int, str]]  # (id, text) before the question
    question: str
    answer: str
    support: list[int]
    first_line: int  # line number in the file of the story's first line


def parse(text: str) -> list[Parsed]:
    """Standard bAbI syntax, first-question files: ids 1..k, then one question line closing each story."""
    out: list[Parsed] = []
    cur: list[tuple[int, str]] = []
    start = 1
    for no, raw in enumerate(text.split("\n"), start=1):
        if raw == "" and no == len(text.split("\n")):
            break  # the file's final newline
        m = re.fullmatch(r"([1-9][0-9]*) ([^\t]+?)(?:\t([^\t]+)\t([0-9]+(?: [0-9]+)*))?", raw)
        if not m:
            raise ValueError(f"line {no}: not bAbI syntax: {raw!r}")
        i = int(m[1])
        if i == 1:
            if cur:
                raise ValueError(f"line {no}: story ended without a question")
            start = no
        if i != len(cur) + 1:
            raise ValueError(f"line {no}: id {i}, expected {len(cur) + 1}")
        if m[3] is None:
            cur.append((i, m[2]))
            continue
        support = [int(x) for x in m[4].split()]
        if not all(1 <= s < i for s in support):
            raise ValueError(f"line {no}: supporting ids {support} outside 1..{i - 1}")
        out.append(Parsed(cur, m[2], m[3], support, start))
        cur = []
    if cur:
        raise ValueError("file ends inside a story")
    return out


MOVE = r"(?:went|moved|travelled|journeyed|went back) to the (\w+)"


# --- qa1 / qa12 ----------------------------------------------------------------------------
def where_is(sentences, question, strict=False):
    who = re.fullmatch(r"Where is (\w+)\?", question)[1]
    room = None
    for _, s in sentences:
        m = re.fullmatch(rf"(\w+)(?: and (\w+))? {MOVE}\.", s)
        if not m:
            raise ValueError(f"unknown sentence {s!r}")
        if who in (m[1], m[2]):
            room = m[3]
    return room


# --- qa2 / qa7 / qa8 -------------------------------------------------------------------------
def events(sentences):
    """(id, kind, person, obj or room, recipient) for each people-and-objects sentence."""
    out = []
    for i, s in sentences:
        if m := re.fullmatch(rf"(\w+) {MOVE}\.", s):
            out.append((i, "move", m[1], m[2], None))
        elif m := re.fullmatch(r"(\w+) (?:took|picked up|grabbed|got) the (\w+) there\.", s):
            out.append((i, "take", m[1], m[2], None))
        elif m := re.fullmatch(r"(\w+) (?:dropped|left|discarded|put down) the (\w+)(?: there)?\.", s):
            out.append((i, "drop", m[1], m[2], None))
        elif m := re.fullmatch(r"(\w+) (?:handed|gave|passed) the (\w+) to (\w+)\.", s):
            out.append((i, "give", m[1], m[2], m[3]))
        else:
            raise ValueError(f"unknown sentence {s!r}")
    return out


def where_is_object(sentences, question, strict=False):
    obj = re.fullmatch(r"Where is the (\w+)\?", question)[1]
    at: dict[str, str] = {}  # person -> room, once stated
    holder: dict[str, str | None] = {}
    lying: dict[str, str | None] = {}  # object -> room it was put down in (None: unknown)
    for _, kind, p, x, to in events(sentences):
        if kind == "move":
            at[p] = x
            continue
        if strict:
            if kind == "take" and holder.get(x):
                raise Inconsistent(f"{p} takes the {x} held by {holder[x]}")
            if kind == "take" and lying.get(x) and at.get(p) and lying[x] != at[p]:
                raise Inconsistent(f"{p} in the {at[p]} takes the {x} lying in the {lying[x]}")
            if kind in ("drop", "give") and holder.get(x) != p:
                raise Inconsistent(f"{p} lets go of the {x} without holding it")
            if kind == "give" and at.get(p) and at.get(to) and at[p] != at[to]:
                raise Inconsistent(f"{p} gives to {to} in another room")
        if kind == "take":
            holder[x], lying[x] = p, None
        elif kind == "give":
            holder[x] = to
        else:
            holder[x], lying[x] = None, at.get(p)
    if holder.get(obj):
        return at.get(holder[obj])
    return lying.get(obj)


def holdings(sentences, who, strict=False):
    """(objects ``who`` holds in the order they got them, ids of the lines that changed them)."""
    held: list[str] = []
    lines: list[int] = []
    owner: dict[str, str] = {}
    for i, kind, p, x, to in events(sentences):
        if kind == "move":
            continue
        if strict and kind in ("drop", "give") and owner.get(x) != p:
            raise Inconsistent(f"{p} lets go of the {x} without holding it")
        if strict and kind == "take" and x in owner:
            raise Inconsistent(f"{p} takes the {x} held by {owner[x]}")
        if kind == "take":
            owner[x] = p
        elif kind == "drop":
            owner.pop(x, None)
        else:
            owner[x] = to
        if who in (p, to):
            lines.append(i)
            if x in held:
                held.remove(x)
            if owner.get(x) == who:
                held.append(x)
    return held, lines


def count_objects(sentences, question, strict=False):
    who = re.fullmatch(r"How many objects is (\w+) carrying\?", question)[1]
    held, _ = holdings(sentences, who, strict)
    return ["none", "one", "two", "three", "four"][len(held)]


def list_objects(sentences, question, strict=False):
    who = re.fullmatch(r"What is (\w+) carrying\?", question)[1]
    held, _ = holdings(sentences, who, strict)
    return ",".join(held) or "nothing"


# --- qa4 -----------------------------------------------------------------------------------
FLIP = {"north": "south", "south": "north", "east": "west", "west": "east"}


def two_arg(sentences, question, strict=False):
    facts = set()  # (x, d, y): x is d of y, both ways round
    for _, s in sentences:
        m = re.fullmatch(r"The (\w+) is (north|south|east|west) of the (\w+)\.", s)
        if not m:
            raise ValueError(f"unknown sentence {s!r}")
        facts |= {(m[1], m[2], m[3]), (m[3], FLIP[m[2]], m[1])}
    if m := re.fullmatch(r"What is (north|south|east|west) of the (\w+)\?", question):
        found = {x for x, d, y in facts if d == m[1] and y == m[2]}
    elif m := re.fullmatch(r"What is the (\w+) (north|south|east|west) of\?", question):
        found = {y for x, d, y in facts if x == m[1] and d == m[2]}
    else:
        raise ValueError(f"unknown question {question!r}")
    if strict and len(found) > 1:
        raise Inconsistent(f"several answers {found}")
    return found.pop() if len(found) == 1 else None


# --- qa14 ----------------------------------------------------------------------------------
TIMES = ["yesterday", "this morning", "this afternoon", "this evening"]


def time_reasoning(sentences, question, strict=False):
    seen: dict[tuple[str, int], str] = {}
    for _, s in sentences:
        if m := re.fullmatch(rf"(Yesterday|This morning|This afternoon|This evening) (\w+) {MOVE}\.", s):
            when, who, room = m[1].lower(), m[2], m[3]
        elif m := re.fullmatch(rf"(\w+) {MOVE} (yesterday|this morning|this afternoon|this evening)\.", s):
            who, room, when = m[1], m[2], m[3]
        else:
            raise ValueError(f"unknown sentence {s!r}")
        key = (who, TIMES.index(when))
        if strict and key in seen:
            raise Inconsistent(f"{who} is in two places {when}")
        seen[key] = room
    m = re.fullmatch(r"Where was (\w+) before the (\w+)\?", question)
    who, room = m[1], m[2]
    slots = [t for (p, t), r in seen.items() if p == who and r == room]
    if len(slots) != 1 or (who, slots[0] - 1) not in seen:
        return None
    return seen[who, slots[0] - 1]


# --- qa15 / qa16 ---------------------------------------------------------------------------
SINGULAR = {"mice": "mouse", "cats": "cat", "sheep": "sheep", "wolves": "wolf"}


def deduction(sentences, question, strict=False):
    fears, kind = {}, {}
    for _, s in sentences:
        if m := re.fullmatch(r"(Mice|Cats|Sheep|Wolves) are afraid of (mice|cats|sheep|wolves)\.", s):
            fears[SINGULAR[m[1].lower()]] = SINGULAR[m[2]]
        elif m := re.fullmatch(r"(\w+) is an? (mouse|cat|sheep|wolf)\.", s):
            kind[m[1].lower()] = m[2]
        else:
            raise ValueError(f"unknown sentence {s!r}")
    who = re.fullmatch(r"What is (\w+) afraid of\?", question)[1].lower()
    return fears.get(kind.get(who))


def induction(sentences, question, strict=False):
    kind, color = {}, {}
    for _, s in sentences:
        if m := re.fullmatch(r"(\w+) is an? (swan|frog|lion|rhino)\.", s):
            kind[m[1]] = m[2]
        elif m := re.fullmatch(r"(\w+) is (yellow|white|green|gray)\.", s):
            color[m[1]] = m[2]
        else:
            raise ValueError(f"unknown sentence {s!r}")
    who = re.fullmatch(r"What color is (\w+)\?", question)[1]
    if who in color:
        return color[who]
    seen = {color[n] for n in color if who in kind and kind.get(n) == kind[who]}
    return seen.pop() if len(seen) == 1 else None


# --- qa17 ----------------------------------------------------------------------------------
STEP = {"above": (0, 1), "below": (0, -1), "to the left of": (-1, 0), "to the right of": (1, 0)}
_REL = "above|below|to the left of|to the right of"


def positional(sentences, question, strict=False):
    """Shapes sit on a grid; "A is above B" puts A in the cell right above B."""
    links = []
    for _, s in sentences:
        m = re.fullmatch(rf"The (.+?) is ({_REL}) the (.+)\.", s)
        if not m:
            raise ValueError(f"unknown sentence {s!r}")
        links.append((m[1], STEP[m[2]], m[3]))
    m = re.fullmatch(rf"Is the (.+?) ({_REL}) the (.+)\?", question)
    x, step, y = m[1], STEP[m[2]], m[3]
    pos = {y: (0, 0)}
    changed = True
    while changed:
        changed = False
        for a, (dx, dy), b in links:
            for known, other, sign in ((b, a, 1), (a, b, -1)):
                if known in pos:
                    want = (pos[known][0] + sign * dx, pos[known][1] + sign * dy)
                    if other not in pos:
                        pos[other] = want
                        changed = True
                    elif strict and pos[other] != want:
                        raise Inconsistent(f"the {other} is in two places")
    if strict and len(set(pos.values())) < len(pos):
        raise Inconsistent("two shapes in one cell")
    if x not in pos:
        return None
    ahead = (pos[x][0] - pos[y][0]) * step[0] + (pos[x][1] - pos[y][1]) * step[1]
    return "yes" if ahead > 0 else "no"


# --- qa18 ----------------------------------------------------------------------------------
def sizes(sentences, question, strict=False):
    smaller = set()  # (a, b): a is smaller than b
    for _, s in sentences:
        if m := re.fullmatch(r"The (.+?) fits inside the (.+)\.", s):
            smaller.add((m[1], m[2]))
        elif m := re.fullmatch(r"The (.+?) is bigger than the (.+)\.", s):
            smaller.add((m[2], m[1]))
        else:
            raise ValueError(f"unknown sentence {s!r}")
    while True:
        more = {(a, d) for a, b in smaller for c, d in smaller if b == c} - smaller
        if not more:
            break
        smaller |= more
    if strict and any(a == b for a, b in smaller):
        raise Inconsistent("size cycle")
    if m := re.fullmatch(r"Is the (.+?) bigger than the (.+)\?", question):
        small, big = m[2], m[1]
    elif m := re.fullmatch(r"Does the (.+?) fit in the (.+)\?", question):
        small, big = m[1], m[2]
    else:
        raise ValueError(f"unknown question {question!r}")
    if (small, big) in smaller:
        return "yes"
    if (big, small) in smaller:
        return "no"
    return None


SOLVERS = {1: where_is, 2: where_is_object, 4: two_arg, 7: count_objects, 8: list_objects, 12: where_is,
           14: time_reasoning, 15: deduction, 16: induction, 17: positional, 18: sizes}

#: tasks whose supporting ids must be exactly the asked person's holding events (see check_story)
WHOLE_HISTORY = {7, 8}


def check_story(task: int, story: Parsed) -> list[str]:
    """Every problem with one story (empty when it is right)."""
    problems = []
    solve = SOLVERS[task]
    ids = [i for i, _ in story.sentences]
    if sorted(set(story.support)) != story.support:
        problems.append(f"supporting ids not ascending and unique: {story.support}")
    if not story.support:
        problems.append("no supporting ids")
    try:
        whole = solve(story.sentences, story.question, strict=True)
    except Inconsistent as e:
        return [f"inconsistent story: {e}"]
    if whole != story.answer:
        problems.append(f"answer {story.answer!r}, story says {whole!r}")
    if any(s not in ids for s in story.support):
        return problems + [f"supporting ids {story.support} not story lines"]
    alone = [(i, s) for i, s in story.sentences if i in story.support]
    if solve(alone, story.question) != story.answer:
        problems.append(f"supporting lines alone give {solve(alone, story.question)!r}")
    if task in WHOLE_HISTORY:
        who = re.search(r"is (\w+) carrying\?", story.question)[1]
        _, needed = holdings(story.sentences, who)
        if needed != story.support:
            problems.append(f"supporting ids {story.support}, holding events {needed}")
    else:
        for drop in story.support:
            fewer = [(i, s) for i, s in alone if i != drop]
            if solve(fewer, story.question) == story.answer:
                problems.append(f"supporting line {drop} is not needed")
    return problems
