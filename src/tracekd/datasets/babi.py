"""bAbI QA (Weston et al., 2015) in the standard bAbI text format -> Examples.

A path is a folder of ``qa{N}_{task-name}_{train|test}.txt`` files (the official
``tasks_1-20_v1-2/en`` and ``en-10k`` folders, or the method's ``en-first-question`` copy), or one
such file. Syntax: ``ID sentence``; a question line is ``ID question<TAB>answer<TAB>supporting ids``;
IDs restart at 1 for every story, and a story may hold several questions.

Decomposition: class = the task name (``single-supporting-fact``, ...); context = the story's
sentence lines before the question (earlier question lines excluded); evidence = the context
indices of the question's supporting ids. Answers are split on ``,`` (``apple,football`` ->
``("apple", "football")``). Ids: ``babi/qa{N}/{split}/{story_index}/{question_line_id}`` with the
0-based story number in its file, so they are stable across runs and option changes.

``load`` raises the first problem as a DataError; ``validate`` returns all of them. A problem
anywhere in a loaded file (also in a question that ``first_question_only`` drops) is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError, did_you_mean
from ..io import read_lines
from ..records import Decomposition, Example
from . import DatasetSpec, Splits

#: The 20 official bAbI tasks, number -> name (as in the official file names).
TASKS: dict[int, str] = {
    1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts",
    4: "two-arg-relations", 5: "three-arg-relations", 6: "yes-no-questions", 7: "counting",
    8: "lists-sets", 9: "simple-negation", 10: "indefinite-knowledge", 11: "basic-coreference",
    12: "conjunction", 13: "compound-coreference", 14: "time-reasoning", 15: "basic-deduction",
    16: "basic-induction", 17: "positional-reasoning", 18: "size-reasoning", 19: "path-finding",
    20: "agents-motivations",
}
#: The method's 11 tasks.
METHOD_TASKS: tuple[str, ...] = tuple(f"qa{n}" for n in (1, 2, 4, 7, 8, 12, 14, 15, 16, 17, 18))
#: Class labels: the names of the method's tasks.
LABELS: tuple[str, ...] = tuple(TASKS[int(t[2:])] for t in METHOD_TASKS)

SPLITS = ("train", "test")
_FILE_RE = re.compile(r"qa(\d+)_(?:([a-z][a-z-]*)_)?(train|test)\.txt")
_ID_RE = re.compile(r"\d+")


def resolve_tasks(value: str | int | list | tuple) -> tuple[str, ...]:
    """Canonical task ids (``qa{N}``, ascending) from ids, numbers, names, a comma list or ``all``.

    >>> resolve_tasks("qa2, 1,counting")
    ('qa1', 'qa2', 'qa7')
    >>> resolve_tasks(["lists-sets", 18])
    ('qa8', 'qa18')
    >>> len(resolve_tasks("all"))
    20
    >>> resolve_tasks("qa21")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: unknown bAbI task 'qa21' (use qa1..qa20, 1..20, a task name or 'all')
    """
    items = value.split(",") if isinstance(value, str) else ([value] if isinstance(value, int) else value)
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"option 'tasks' must be a list or a comma-separated string, got {type(value).__name__}")
    by_name = {name: n for n, name in TASKS.items()}
    numbers: set[int] = set()
    for item in items:
        key = str(item).strip().lower()
        if key == "all":
            numbers.update(TASKS)
            continue
        m = re.fullmatch(r"(?:qa)?(\d+)", key)
        if m and int(m.group(1)) in TASKS:
            numbers.add(int(m.group(1)))
        elif key in by_name:
            numbers.add(by_name[key])
        elif m:
            raise ConfigError(f"unknown bAbI task {key!r} (use qa1..qa20, 1..20, a task name or 'all')")
        else:
            raise ConfigError(did_you_mean(key, by_name, "bAbI task"))
    if not numbers:
        raise ConfigError("option 'tasks' is empty")
    return tuple(f"qa{n}" for n in sorted(numbers))


def parse_file_name(path: str | Path) -> tuple[int, str]:
    """``(task number, split)`` of a bAbI file name; anything else raises a DataError.

    >>> parse_file_name("data/qa2_two-supporting-facts_train.txt")
    (2, 'train')
    >>> parse_file_name("qa17_test.txt")
    (17, 'test')
    >>> parse_file_name("qa2_counting_test.txt")
    Traceback (most recent call last):
    ...
    tracekd.errors.DataError: qa2_counting_test.txt: field 'file_name': task name 'counting' does not match qa2 (two-supporting-facts)
    """
    path = Path(path)
    m = _FILE_RE.fullmatch(path.name)
    if not m:
        raise DataError(f"unknown task file name {path.name!r} "
                        "(expected qa{N}_{task-name}_{train|test}.txt)", path=path, field="file_name")
    n, name, split = int(m.group(1)), m.group(2), m.group(3)
    if n not in TASKS:
        raise DataError(f"unknown task number qa{n} (bAbI has qa1..qa20)", path=path, field="file_name")
    if name is not None and name != TASKS[n]:
        raise DataError(f"task name {name!r} does not match qa{n} ({TASKS[n]})", path=path, field="file_name")
    return n, split


@dataclass(frozen=True)
class BabiOptions:
    """Options of the bAbI loader (defaults = the method's)."""

    first_question_only: bool = field(default=True, metadata={
        "help": "keep only the first question of each story (the method's setting); "
                "false: every question, each with the story lines before it as context"})
    tasks: tuple[str, ...] = field(default=METHOD_TASKS, metadata={
        "help": "tasks to load: ids (qa1), numbers (1), names (counting), a comma list or 'all' "
                "(default: the method's 11); ignored when the path is a single file"})

    def __post_init__(self) -> None:
        if not isinstance(self.first_question_only, bool):
            raise ConfigError(f"option 'first_question_only' must be true or false, got {self.first_question_only!r}")
        object.__setattr__(self, "tasks", resolve_tasks(self.tasks))


# ---------------------------------------------------------------------------------------------
# parsing


@dataclass
class _Story:
    index: int
    first_line: int
    kinds: dict[int, str] = field(default_factory=dict)  # line ID -> "s" (sentence) or "q" (question)
    context_index: dict[int, int] = field(default_factory=dict)  # sentence line ID -> context index
    context: list[str] = field(default_factory=list)
    last_id: int = 0
    questions: int = 0


def parse_file(path: str | Path, *, first_question_only: bool = True) -> tuple[list[Example], list[DataError]]:
    """Every Example of one bAbI file and every problem found in it (parsing never stops early)."""
    path = Path(path)
    try:
        n, split = parse_file_name(path)
    except DataError as e:
        return [], [e]
    try:
        lines = read_lines(path)
    except DataError as e:
        return [], [e]
    task_id, label = f"qa{n}", TASKS[n]
    examples: list[Example] = []
    errors: list[DataError] = []
    story: _Story | None = None
    n_stories = 0

    def close(s: _Story | None) -> None:
        if s is not None and s.questions == 0:
            errors.append(DataError("story has no question line (a question is 'ID question<TAB>answer<TAB>ids')",
                                    path=path, line=s.first_line, field="question"))

    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        before = len(errors)

        def err(message: str, fld: str) -> None:
            errors.append(DataError(message, path=path, line=lineno, field=fld))

        head, _, rest = line.partition(" ")
        if not _ID_RE.fullmatch(head):
            err(f"line ID {head!r} is not a positive integer (a line is 'ID sentence')", "line_id")
            continue
        lid = int(head)
        if lid == 1 or story is None:
            close(story)
            story = _Story(index=n_stories, first_line=lineno)
            n_stories += 1
            if lid != 1:
                err(f"a story must start at line ID 1, got {lid}", "line_id")
        elif lid <= story.last_id:
            err(f"line ID {lid} does not increase (previous {story.last_id}; a new story starts at 1)", "line_id")
        story.last_id = max(story.last_id, lid)

        if "\t" not in rest:
            text = rest.strip()
            if "?" in text:  # bAbI sentences never hold one; questions always do
                story.kinds[lid] = "q"
                story.questions += 1
                err("question line without tabs (expected 'ID question<TAB>answer<TAB>supporting ids')", "question")
            elif not text:
                err("empty sentence", "sentence")
            else:
                story.kinds[lid] = "s"
                story.context_index[lid] = len(story.context)
                story.context.append(text)
            continue

        # a question line
        story.kinds[lid] = "q"
        story.questions += 1
        parts = rest.split("\t")
        question = parts[0].strip()
        answer = parts[1].strip() if len(parts) > 1 else ""
        support = parts[2].strip() if len(parts) > 2 else ""
        if not question:
            err("empty question", "question")
        if any(p.strip() for p in parts[3:]):
            err(f"unexpected extra tab-separated field(s) {parts[3:]!r}", "line")
        answers = tuple(a.strip() for a in answer.split(","))
        if not all(answers):
            err(f"empty answer in {answer!r}" if answer else "empty answer", "answer")
        evidence: set[int] = set()
        ids: list[int] = []
        if not support:
            err("supporting ids missing (expected 'question<TAB>answer<TAB>ids')", "supporting_ids")
        for tok in support.split():
            if not _ID_RE.fullmatch(tok):
                err(f"supporting id {tok!r} is not a positive integer", "supporting_ids")
            elif not 1 <= int(tok) < lid:
                err(f"supporting id {tok} out of range (must be an earlier line, 1..{lid - 1})", "supporting_ids")
            elif int(tok) not in story.kinds:
                err(f"supporting id {tok}: no line {tok} in this story", "supporting_ids")
            elif story.kinds[int(tok)] == "q":
                err(f"supporting id {tok} points at a question line", "supporting_ids")
            else:
                ids.append(int(tok))
                evidence.add(story.context_index[int(tok)])
        if len(errors) > before or (first_question_only and story.questions > 1):
            continue
        examples.append(Example(
            id=f"babi/{task_id}/{split}/{story.index}/{lid}",
            dataset="babi",
            split=split,
            question=question,
            context=tuple(story.context),
            answers=answers,
            gold=Decomposition(label, tuple(sorted(evidence))),
            meta={"task_id": task_id, "source": path.name, "line": lineno, "supporting_ids": ids},
        ))
    close(story)
    if not lines or not any(line.strip() for line in lines):
        errors.append(DataError("empty file", path=path))
    return examples, errors


def data_files(path: str | Path) -> list[Path]:
    """The data files under ``path``: the file itself, or every ``*.txt`` file directly in the folder."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".txt")
    return [path]


def _file_problems(files: list[Path]) -> tuple[dict[tuple[int, str], Path], list[DataError]]:
    """Map (task, split) -> file; unknown names and duplicates are problems."""
    found: dict[tuple[int, str], Path] = {}
    errors: list[DataError] = []
    for f in files:
        try:
            key = parse_file_name(f)
        except DataError as e:
            errors.append(e)
            continue
        if key in found:
            errors.append(DataError(f"duplicate file for qa{key[0]} {key[1]} (also {found[key].name})",
                                    path=f, field="file_name"))
            continue
        found[key] = f
    return found, errors


def load(path: Path, options: BabiOptions) -> Splits:
    """``{"train": [...], "test": [...]}``, ordered by task number, then story, then question line."""
    path = Path(path)
    files = data_files(path)
    if not files:
        raise DataError("no bAbI task files (*.txt) in this folder", path=path)
    found, problems = _file_problems(files)
    if problems:
        raise problems[0]
    if path.is_dir():
        wanted = {int(t[2:]) for t in options.tasks}
        have = {n for n, _ in found}
        missing = sorted(wanted - have)
        if missing:
            names = ", ".join(f"qa{n} ({TASKS[n]})" for n in missing)
            raise DataError(f"no file for task(s) {names}; {subset_hint(sorted(have))}", path=path, field="tasks")
        found = {k: v for k, v in found.items() if k[0] in wanted}
    out: Splits = {split: [] for split in SPLITS}
    for (n, split), f in sorted(found.items()):
        examples, errors = parse_file(f, first_question_only=options.first_question_only)
        if errors:
            raise errors[0]
        out[split].extend(examples)
    return out


def subset_hint(have: list[int]) -> str:
    """What to pass to load a folder holding only the tasks ``have`` (task numbers).

    >>> subset_hint([2, 1])
    'the folder holds qa1, qa2: load them with --option tasks=qa1,qa2'
    """
    if not have:
        return "the folder holds no task file"
    ids = ",".join(f"qa{n}" for n in sorted(have))
    return f"the folder holds {ids.replace(',', ', ')}: load them with --option tasks={ids}"


def notes(path: Path) -> list[str]:
    """What ``tracekd build`` will need that the files alone do not say (not problems).

    A folder without every one of the method's 11 tasks builds only with the option ``tasks``.
    """
    path = Path(path)
    if not path.is_dir():
        return []
    have = sorted({n for n, _ in _file_problems(data_files(path))[0]})
    missing = [t for t in METHOD_TASKS if int(t[2:]) not in have]
    if not have or not missing:
        return []
    return [f"{path}: holds {len(have)} task(s), not the method's 11 that build loads by default "
            f"(missing {', '.join(missing)}); {subset_hint(have)}"]


def validate(path: Path) -> list[DataError]:
    """Every problem in the bAbI file(s) at ``path``."""
    path = Path(path)
    if not path.exists():
        return [DataError("no such file or folder", path=path)]
    files = data_files(path)
    if not files:
        return [DataError("no bAbI task files (*.txt) in this folder", path=path)]
    found, errors = _file_problems(files)
    for f in sorted(found.values()):
        errors.extend(parse_file(f, first_question_only=False)[1])
    return errors


SPEC = DatasetSpec(
    name="babi",
    description="bAbI QA (Weston et al., 2015), 11 tasks; class = task name, evidence = supporting facts",
    labels=LABELS,
    load=load,
    validate=validate,
    notes=notes,
    options=BabiOptions,
    template="reference-qa",
    scorer="strict",
    reference_size="3,773 train / 376 test (11 tasks, first question per story)",
    download=(
        "bAbI: get the official archive tasks_1-20_v1-2.tar.gz (Facebook Research bAbI tasks, CC BY 3.0; "
        "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz) and point tracekd at its "
        "en/ or en-10k/ folder, or export the HF dataset facebook/babi_qa to the same text format. "
        "The method uses the first question of each story of 11 tasks (qa1 2 4 7 8 12 14 15 16 17 18)."
    ),
)
