"""Generate bAbI-style stories for the method's 11 tasks by rule-based world simulation.

  tracekd synth babi --tasks all --n 1000 --seed 0 --out data/babi-synth
  tracekd synth babi --tasks qa1,qa2,qa16 --n 200 --n-test 50 --seed 3 --out /tmp/b

Writes ``qa{N}_{task-name}_{train|test}.txt`` in the standard bAbI text format (``ID sentence``;
``ID question<TAB>answer<TAB>supporting ids``; ids restart at 1 per story; one question, last,
per story, as in the method's first-question files) and ``manifest.json`` (sha256 of each file).
Sentences, question wording, names and answers follow the real bAbI files task by task.

Each story is simulated in a small world: people moving between rooms and handling objects
(qa1, qa2, qa7, qa8, qa12), a map of adjacent rooms (qa4), time-stamped moves (qa14), animals with
species, fears and colours (qa15, qa16), shapes on a grid (qa17), containers ordered by size
(qa18). Answers are read from the simulated world; supporting ids are the lines that alone fix
the answer, and each of them is needed (qa7 and qa8: every line that changed what the person
holds, since a count or a list needs the person's whole history). Stories where bAbI itself can
be ambiguous are never written: qa4/qa17 "north of"/"above" mean the adjacent cell; qa14 nobody
visits a place twice; qa16 every coloured animal of the asked species has the same colour; qa18
the asked pair is never stated directly, only through one middle object (chocolate < box of
chocolates < box, container, chest, suitcase in a per-story order). People carry at most two
objects, as in the real first-question files.

Python API: ``generate_task(task, n, seed, split) -> list[Story]``, ``format_stories(stories)``,
``write_babi(out_dir, tasks, n_train, n_test, seed) -> manifest``.

The same ``--seed`` gives the same bytes; each story draws from its own generator seeded by
(seed, task, split, story index), so tasks and splits are independent of each other.
"""

from __future__ import annotations

import argparse
import difflib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..io import clear_listed, manifest, sha256_file, write_json, write_text
from .world import MOVE_VERBS, PEOPLE, ROOMS, ObjectWorld

HELP = "bAbI-style stories for the 11 tasks of the method (rule-based world simulation)"


@dataclass(frozen=True)
class Story:
    """One bAbI story: its sentences, then one question with answer and 1-based supporting ids.

    >>> s = Story(1, ("Mary went to the kitchen.", "John moved to the office."),
    ...           "Where is Mary?", "kitchen", (1,))
    >>> s.to_text().splitlines()
    ['1 Mary went to the kitchen.', '2 John moved to the office.', '3 Where is Mary?\\tkitchen\\t1']
    """

    task: int
    sentences: tuple[str, ...]
    question: str
    answer: str
    supporting: tuple[int, ...]

    def to_text(self) -> str:
        lines = [f"{i} {s}" for i, s in enumerate(self.sentences, start=1)]
        ids = " ".join(map(str, self.supporting))
        lines.append(f"{len(self.sentences) + 1} {self.question}\t{self.answer}\t{ids}")
        return "\n".join(lines) + "\n"


Generator = Callable[[random.Random], Story]


# --- qa1, qa12: where is a person ------------------------------------------------------------
def _qa1(rng: random.Random) -> Story:
    world = ObjectWorld(rng)
    sentences = []
    for _ in range(2):
        p = rng.choice(PEOPLE)
        sentences.append(world.move(p, rng.choice([r for r in ROOMS if r != world.where[p]]), rng))
    who = rng.choice(sorted(world.moved_at))
    return Story(1, tuple(sentences), f"Where is {who}?", world.where[who], (world.moved_at[who],))


def _qa12(rng: random.Random) -> Story:
    where: dict[str, str] = {}
    last: dict[str, int] = {}
    sentences = []
    for line in (1, 2):
        a, b = rng.sample(PEOPLE, 2)
        room = rng.choice([r for r in ROOMS if r not in (where.get(a), where.get(b))])
        sentences.append(f"{a} and {b} {rng.choice(MOVE_VERBS)} the {room}.")
        for p in (a, b):
            where[p], last[p] = room, line
    who = rng.choice(sorted(where))
    return Story(12, tuple(sentences), f"Where is {who}?", where[who], (last[who],))


# --- qa2, qa7, qa8: people handling objects ---------------------------------------------------
_NUMBERS = ("none", "one", "two", "three")
#: per task: (most sentence pairs before a world is discarded, chance to ask when a question is possible)
_OBJECT_PACE = {2: (24, 0.7), 7: (16, 0.6), 8: (16, 0.6)}


def _object_story(rng: random.Random, task: int) -> Story:
    """Simulate two sentences at a time; ask once a question about the last two is answerable."""
    max_pairs, ask_p = _OBJECT_PACE[task]
    while True:  # a world that never offers a question within max_pairs is discarded
        world = ObjectWorld(rng)
        sentences: list[str] = []
        for _ in range(max_pairs):
            for _ in range(2):
                sentences.append(world.random_action(rng, give=(task == 7)))
            recent = {len(sentences) - 1, len(sentences)}
            if task == 2:
                known = {o: world.stated_object_room(o) for o in world.objects}
                cands = [o for o, k in known.items() if k is not None and recent & set(k[1])]
            else:
                cands = [p for p in world.people if recent & set(world.holding_events(p))]
            if not cands or rng.random() >= ask_p:
                continue
            if task == 2:
                obj = rng.choice(cands)
                room, support = known[obj]  # type: ignore[misc]
                assert room == (world.where[world.holder[obj]] if world.holder[obj]
                                else world.obj_room[obj])
                return Story(2, tuple(sentences), f"Where is the {obj}?", room, tuple(sorted(support)))
            who = rng.choice(cands)
            held = world.held_by(who)
            support = tuple(world.holding_events(who))
            if task == 7:
                return Story(7, tuple(sentences), f"How many objects is {who} carrying?",
                             _NUMBERS[len(held)], support)
            return Story(8, tuple(sentences), f"What is {who} carrying?",
                         ",".join(held) if held else "nothing", support)


# --- qa4: a map of adjacent rooms ---------------------------------------------------------------
_DIRS = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
_OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}


def _qa4(rng: random.Random) -> Story:
    a, b, c = rng.sample(ROOMS, 3)
    pos = {b: (0, 0)}
    d1 = rng.choice(list(_DIRS))
    pos[a] = _DIRS[d1]
    facts = [(a, d1, b)]  # (x, d, y): x is d of y
    while True:
        anchor, d2 = rng.choice((a, b)), rng.choice(list(_DIRS))
        cell = (pos[anchor][0] + _DIRS[d2][0], pos[anchor][1] + _DIRS[d2][1])
        if cell not in pos.values():
            break
    pos[c] = cell
    facts.append((c, d2, anchor))
    facts = [(x, d, y) if rng.random() < 0.5 else (y, _OPPOSITE[d], x) for x, d, y in facts]
    sentences = tuple(f"The {x} is {d} of the {y}." for x, d, y in facts)
    line = rng.choice((1, 2))
    x, d, y = facts[line - 1]
    form = rng.randrange(4)
    if form == 0:
        q, ans = f"What is {d} of the {y}?", x
    elif form == 1:
        q, ans = f"What is the {x} {d} of?", y
    elif form == 2:
        q, ans = f"What is {_OPPOSITE[d]} of the {x}?", y
    else:
        q, ans = f"What is the {y} {_OPPOSITE[d]} of?", x
    return Story(4, sentences, q, ans, (line,))


# --- qa14: time-stamped moves --------------------------------------------------------------------
_T_PEOPLE = ("Bill", "Fred", "Julie", "Mary")
_T_ROOMS = ("park", "school", "cinema", "kitchen", "bedroom", "office")
_SLOTS = ("yesterday", "this morning", "this afternoon")


def _qa14(rng: random.Random) -> Story:
    n_lines = rng.choices((2, 4, 6), weights=(18, 72, 10))[0]
    who = rng.choice(_T_PEOPLE)
    counts = dict.fromkeys(_T_PEOPLE, 0)
    counts[who] = 3 if n_lines > 2 and rng.random() < 0.3 else 2
    for _ in range(n_lines - counts[who]):
        counts[rng.choice([p for p in _T_PEOPLE if p != who and counts[p] < 3])] += 1
    events = []  # (person, slot index, room)
    for p in _T_PEOPLE:
        for slot, room in enumerate(rng.sample(_T_ROOMS, counts[p])):
            events.append((p, slot, room))
    rng.shuffle(events)
    sentences = []
    for p, slot, room in events:
        when = _SLOTS[slot]
        verb = rng.choice(MOVE_VERBS)
        if rng.random() < 0.5:
            sentences.append(f"{when[0].upper()}{when[1:]} {p} {verb} the {room}.")
        else:
            sentences.append(f"{p} {verb} the {room} {when}.")
    t = rng.randrange(1, counts[who])
    line = {(p, s): i for i, (p, s, _) in enumerate(events, start=1)}
    rooms = {(p, s): r for p, s, r in events}
    return Story(14, tuple(sentences), f"Where was {who} before the {rooms[who, t]}?",
                 rooms[who, t - 1], tuple(sorted((line[who, t], line[who, t - 1]))))


# --- qa15, qa16: animals ---------------------------------------------------------------------------
_FEAR_NAMES = ("Jessica", "Emily", "Winona", "Gertrude")
_PLURAL = {"mouse": "mice", "cat": "cats", "sheep": "sheep", "wolf": "wolves"}


def _qa15(rng: random.Random) -> Story:
    species = list(_PLURAL)
    lines = [("rule", s, rng.choice([o for o in species if o != s])) for s in species]
    lines += [("is", n, rng.choice(species)) for n in _FEAR_NAMES]
    rng.shuffle(lines)
    sentences = tuple(f"{_PLURAL[s].capitalize()} are afraid of {_PLURAL[o]}." if kind == "rule"
                      else f"{s} is a {o}." for kind, s, o in lines)
    who = rng.choice(_FEAR_NAMES)
    i_is = next(i for i, x in enumerate(lines, 1) if x[:2] == ("is", who))
    sp = lines[i_is - 1][2]
    i_rule = next(i for i, x in enumerate(lines, 1) if x[:2] == ("rule", sp))
    return Story(15, sentences, f"What is {who.lower()} afraid of?", lines[i_rule - 1][2],
                 tuple(sorted((i_is, i_rule))))


_COLOR_NAMES = ("Lily", "Julius", "Brian", "Bernhard", "Greg")
_ANIMALS = ("swan", "frog", "lion", "rhino")
_COLORS = ("yellow", "white", "green", "gray")


def _qa16(rng: random.Random) -> Story:
    who = rng.choice(_COLOR_NAMES)
    kind = {n: rng.choice(_ANIMALS) for n in _COLOR_NAMES}
    others = [n for n in _COLOR_NAMES if n != who]
    if not any(kind[n] == kind[who] for n in others):
        kind[rng.choice(others)] = kind[who]
    answer = rng.choice(_COLORS)
    color = {n: answer if kind[n] == kind[who] else rng.choice(_COLORS) for n in others}
    turns = [n for n in others for _ in range(2)] + [who]
    rng.shuffle(turns)
    sentences, seen, at = [], set(), {}
    for i, n in enumerate(turns, start=1):
        if n in seen:
            sentences.append(f"{n} is {color[n]}.")
            at[n, "color"] = i
        else:
            seen.add(n)
            sentences.append(f"{n} is a {kind[n]}.")
            at[n, "kind"] = i
    witness = max((n for n in others if kind[n] == kind[who]), key=lambda n: at[n, "color"])
    support = (at[who, "kind"], at[witness, "kind"], at[witness, "color"])
    return Story(16, tuple(sentences), f"What color is {who}?", answer, tuple(sorted(support)))


# --- qa17: shapes on a grid -----------------------------------------------------------------------
_SHAPES = ("red square", "red sphere", "blue square", "pink rectangle", "triangle", "yellow square")
_REL = {(0, 1): "above", (0, -1): "below", (-1, 0): "to the left of", (1, 0): "to the right of"}


def _holds(rel: tuple[int, int], x: tuple[int, int], y: tuple[int, int]) -> bool:
    """Whether ``x`` is in direction ``rel`` of ``y`` (on that axis only)."""
    return (x[0] - y[0]) * rel[0] + (x[1] - y[1]) * rel[1] > 0


def _qa17(rng: random.Random) -> Story:
    hub, a, b = rng.sample(_SHAPES, 3)
    da, db = rng.sample(list(_REL), 2)
    pos = {hub: (0, 0), a: da, b: db}
    sentences = []
    for x, d in rng.sample([(a, da), (b, db)], 2):
        if rng.random() < 0.5:
            sentences.append(f"The {x} is {_REL[d]} the {hub}.")
        else:
            sentences.append(f"The {hub} is {_REL[(-d[0], -d[1])]} the {x}.")
    x, y = (a, b) if rng.random() < 0.5 else (b, a)
    want = rng.random() < 0.5
    rels = [r for r in _REL if _holds(r, pos[x], pos[y]) == want]
    if not rels:  # only possible for "yes" when x and y coincide, which sample() rules out
        raise AssertionError("no relation to ask")
    rel = rng.choice(rels)
    return Story(17, tuple(sentences), f"Is the {x} {_REL[rel]} the {y}?", "yes" if want else "no", (1, 2))


# --- qa18: containers by size -------------------------------------------------------------------
_SMALL = ("chocolate", "box of chocolates")  # always the two smallest, as in bAbI
_BOXES = ("box", "container", "chest", "suitcase")  # their order is drawn per story


def _qa18(rng: random.Random) -> Story:
    order = list(_SMALL) + rng.sample(_BOXES, len(_BOXES))  # smallest first
    n = rng.choices((5, 10), weights=(8, 2))[0]
    i, j, k = sorted(rng.sample(range(len(order)), 3))
    small, mid, big = order[i], order[j], order[k]
    chain = [(small, mid), (mid, big)]
    rest = [(order[p], order[q]) for p in range(len(order)) for q in range(p + 1, len(order))
            if (order[p], order[q]) not in chain and (order[p], order[q]) != (small, big)]
    facts = chain + rng.sample(rest, n - 2)
    rng.shuffle(facts)
    sentences = tuple(f"The {inner} fits inside the {outer}." if rng.random() < 0.5
                      else f"The {outer} is bigger than the {inner}." for inner, outer in facts)
    yes = rng.random() < 0.5
    if rng.random() < 0.5:
        x, y = (big, small) if yes else (small, big)
        q = f"Is the {x} bigger than the {y}?"
    else:
        x, y = (small, big) if yes else (big, small)
        q = f"Does the {x} fit in the {y}?"
    support = tuple(sorted(facts.index(c) + 1 for c in chain))
    return Story(18, sentences, q, "yes" if yes else "no", support)


# --- the task table and the API ------------------------------------------------------------------
TASKS: dict[int, tuple[str, Generator]] = {
    1: ("single-supporting-fact", _qa1),
    2: ("two-supporting-facts", lambda rng: _object_story(rng, 2)),
    4: ("two-arg-relations", _qa4),
    7: ("counting", lambda rng: _object_story(rng, 7)),
    8: ("lists-sets", lambda rng: _object_story(rng, 8)),
    12: ("conjunction", _qa12),
    14: ("time-reasoning", _qa14),
    15: ("basic-deduction", _qa15),
    16: ("basic-induction", _qa16),
    17: ("positional-reasoning", _qa17),
    18: ("size-reasoning", _qa18),
}


def task_number(task: int | str) -> int:
    """The task number of ``task`` given as 4, "4", "qa4", "two-arg-relations" or "qa4_two-arg-relations".

    >>> task_number("qa16"), task_number("counting"), task_number("qa8_lists-sets")
    (16, 7, 8)
    >>> task_number("countng")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: unknown bAbI task 'countng'; did you mean 'counting'? (choices: all, qa1, qa2, qa4, qa7, qa8, qa12, qa14, qa15, qa16, qa17, qa18, or their names)
    """
    key = str(task).strip().lower()
    for n, (name, _) in TASKS.items():
        if key in (str(n), f"qa{n}", name, f"qa{n}_{name}"):
            return n
    known = [f"qa{n}" for n in TASKS] + [name for name, _ in TASKS.values()]
    close = [] if re.fullmatch(r"(qa)?\d+", key) else difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown bAbI task {key!r}{hint} (choices: all, {', '.join(known[:len(TASKS)])}, or their names)")


def parse_tasks(spec: str) -> list[int]:
    """Task numbers from ``all`` or a comma list (``qa1,qa2`` / ``1,2``), in task order.

    >>> parse_tasks("qa16, qa1,1")
    [1, 16]
    >>> len(parse_tasks("all"))
    11
    """
    if spec.strip().lower() == "all":
        return list(TASKS)
    nums = {task_number(t) for t in spec.split(",") if t.strip()}
    if not nums:
        raise ConfigError("no bAbI task given (use 'all' or e.g. 'qa1,qa2')")
    return sorted(nums)


def file_name(task: int | str, split: str) -> str:
    """
    >>> file_name(4, "train")
    'qa4_two-arg-relations_train.txt'
    """
    n = task_number(task)
    return f"qa{n}_{TASKS[n][0]}_{split}.txt"


def generate_task(task: int | str, n: int, seed: int, split: str = "train") -> list[Story]:
    """``n`` stories of ``task``; story ``i`` depends only on (seed, task, split, i).

    >>> [s.answer for s in generate_task("qa17", 3, seed=0)] == [s.answer for s in generate_task(17, 3, 0)]
    True
    """
    num = task_number(task)
    make = TASKS[num][1]
    return [make(random.Random(f"tracekd-babi/{seed}/qa{num}/{split}/{i}")) for i in range(n)]


def format_stories(stories: list[Story]) -> str:
    """The bAbI text of ``stories``, one after the other."""
    return "".join(s.to_text() for s in stories)


def write_babi(out_dir: str | Path, tasks: list[int | str] | str = "all", n_train: int = 1000,
               n_test: int | None = None, seed: int = 0, overwrite: bool = False) -> dict:
    """Write train and test files of ``tasks`` plus ``manifest.json`` into ``out_dir``; return the manifest.

    A non-empty ``out_dir`` is refused unless ``overwrite``, which first deletes the files its
    manifest lists (an earlier synth's) and nothing else; files kept are named in ``m["kept"]``.
    """
    if n_train < 0 or (n_test is not None and n_test < 0):
        raise ConfigError("story counts must be >= 0")
    n_test = max(1, n_train // 10) if n_test is None else n_test
    nums = parse_tasks(tasks) if isinstance(tasks, str) else sorted({task_number(t) for t in tasks})
    out = Path(out_dir)
    kept = clear_listed(out, overwrite, "synth output folder", kind="synth-")
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    for num in nums:
        for split, n in (("train", n_train), ("test", n_test)):
            name = file_name(num, split)
            write_text(out / name, format_stories(generate_task(num, n, seed, split)))
            files[name] = sha256_file(out / name)
            counts[name] = n
    m = manifest(kind="synth-babi", seed=seed, files=files, stories=counts,
                 config={"tasks": [f"qa{n}" for n in nums], "n_train": n_train, "n_test": n_test, "seed": seed})
    write_json(out / "manifest.json", m)
    m["kept"] = kept
    return m


def write_from_spec(spec: dict, out_dir, overwrite: bool = False) -> dict:
    """:func:`write_babi` from an experiment's ``synth:`` entry (``tasks``, ``n``, ``n_test``, ``seed``)."""
    return write_babi(out_dir, tasks=spec.get("tasks", "all"), n_train=spec["n"], n_test=spec.get("n_test"),
                      seed=spec.get("seed", 0), overwrite=overwrite)


# --- CLI -----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", default="all", help="'all' or a comma list such as qa1,qa2,qa16 (default: all)")
    parser.add_argument("--n", type=int, default=1000, help="train stories per task (default: 1000)")
    parser.add_argument("--n-test", type=int, default=None, help="test stories per task (default: max(1, N//10))")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", required=True, help="output folder (refused when not empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder: delete the files its manifest.json lists "
                             "(an earlier synth's), keep anything else")


def run(args: argparse.Namespace) -> int:
    m = write_babi(args.out, args.tasks, args.n, args.n_test, args.seed, overwrite=args.overwrite)
    n_files = len(m["files"])
    print(f"wrote {n_files} files ({sum(m['stories'].values())} stories) and manifest.json to {args.out}")
    if m["kept"]:
        print(f"note: kept {len(m['kept'])} file(s) not written by tracekd synth: {', '.join(m['kept'])}")
    return 0
