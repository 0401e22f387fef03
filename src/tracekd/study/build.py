"""Sample a study's items from built SFT arms into a study folder.

``BUILD_DIR`` is a ``tracekd build`` folder or an experiment run (``tracekd run``, ``tracekd demo``) with one
build stage. Each condition reads ``{source}/{arm}/{split}.jsonl`` (TRL prompt-completion rows, any arm: the decomposed
arms of ``tracekd build`` or teacher arms in the same format); question, context and class come from
``{source}/examples/{split}.jsonl`` by example id (or, for rows without an example, from the method's
prompt). Items are ``items_per_condition`` per condition, balanced over the dataset's classes, the same
questions in every condition as far as the conditions share them, all drawn with the config's seed.

Output: ``STUDY_DIR/study.json`` (the config and every item as shown) and ``STUDY_DIR/manifest.json``.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

from ..errors import ConfigError, DataError
from ..io import iter_jsonl, manifest, read_json, sha256_file, write_json
from .config import StudyConfig, config_dict, load_study_config

_THINK = re.compile(r"<think>(.*?)</think>", re.S)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_PROMPT = re.compile(r"context:\n(?P<context>.*)\nQuestion: (?P<question>.*?)(?: Only return the answer\.)?\s*$", re.S)


def split_completion(text: str) -> tuple[str, str | None]:
    """A completion's (trace, answer): ``<think>`` / ``<answer>`` contents when tagged.

    >>> split_completion("<think>It is in the garden.</think> <answer>garden</answer>")
    ('It is in the garden.', 'garden')
    >>> split_completion("<think>Because X.</think> kitchen")
    ('Because X.', 'kitchen')
    >>> split_completion("Just an explanation.")
    ('Just an explanation.', None)
    """
    think = _THINK.search(text)
    answer = _ANSWER.search(text)
    if think:
        trace = think.group(1).strip()
        rest = answer.group(1).strip() if answer else text[think.end():].strip()
        return trace, (rest or None)
    if answer:
        return text[:answer.start()].strip(), answer.group(1).strip()
    return text.strip(), None


def parse_prompt(text: str) -> tuple[str, list[str]] | None:
    """(question, context lines) from the method's prompt, or None when it is not in that form.

    >>> parse_prompt("Answer the question based on the context:\\nA is here.\\nB left.\\nQuestion: Where is A? Only return the answer.")
    ('Where is A?', ['A is here.', 'B left.'])
    """
    m = _PROMPT.search(text)
    if not m:
        return None
    return m.group("question").strip(), [s for s in m.group("context").split("\n") if s.strip()]


def _load_examples(source: Path, split: str) -> dict[str, dict]:
    path = source / "examples" / f"{split}.jsonl"
    if not path.is_file():
        return {}
    return {obj["id"]: obj for _, obj in iter_jsonl(path) if isinstance(obj.get("id"), str)}


def _load_condition(cfg: StudyConfig, cond, build_dir: Path) -> tuple[Path, dict[str, dict]]:
    source = Path(cond.source) if cond.source else build_dir
    path = source / cond.arm / f"{cfg.split}.jsonl"
    if not path.is_file():
        raise ConfigError(f"condition {cond.name!r}: no arm file {path} (arms there: "
                          f"{', '.join(sorted(p.name for p in source.iterdir() if p.is_dir() and p.name != 'examples')) or 'none'})"
                          if source.is_dir() else f"condition {cond.name!r}: no build folder {source}")
    examples = _load_examples(source, cfg.split)
    if source != build_dir:
        examples = {**_load_examples(build_dir, cfg.split), **examples}
    rows: dict[str, dict] = {}
    for line, obj in iter_jsonl(path):
        def bad(field: str, msg: str) -> DataError:
            return DataError(msg, path=path, line=line, field=field)

        rid = obj.get("id")
        if not isinstance(rid, str) or not rid:
            raise bad("id", "missing or not a string")
        completion = obj.get("completion")
        if not isinstance(completion, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                       for m in completion) or not completion:
            raise bad("completion", "must be a non-empty list of messages with string 'content'")
        prompt = obj.get("prompt")
        if not isinstance(prompt, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                   for m in prompt):
            raise bad("prompt", "must be a list of messages with string 'content'")
        if rid in rows:
            raise bad("id", f"repeated id {rid!r}")
        trace, answer = split_completion("".join(m["content"] for m in completion))
        if not trace:
            raise bad("completion", "empty trace")
        ex = examples.get(rid)
        if ex is not None:
            question, context = ex.get("question"), ex.get("context")
            label = (ex.get("gold") or {}).get("label") or ""
            gold_answers = ex.get("answers") or []
        else:
            user = next((m["content"] for m in prompt if m.get("role") == "user"), "")
            parsed = parse_prompt(user)
            if parsed is None:
                raise bad("prompt", "no example with this id and the user message is not the method's prompt "
                                    "(cannot find question and context)")
            question, context = parsed
            label = (obj.get("target") or {}).get("label") or "" if isinstance(obj.get("target"), dict) else ""
            gold_answers = []
        if answer is None:
            answer = ", ".join(map(str, gold_answers)) if gold_answers else ""
            answer_source = "gold"
        else:
            answer_source = "completion"
        rows[rid] = {"example_id": rid, "class": label, "question": question,
                     "context": list(context) if isinstance(context, list) else [str(context)],
                     "trace": trace, "answer": answer, "answer_source": answer_source}
    return path, rows


def balanced_sample(ids_by_class: dict[str, list[str]], n: int, rng: random.Random) -> list[str]:
    """Up to ``n`` ids taken class by class in turn (class order and ids within a class shuffled).

    >>> picked = balanced_sample({"a": ["a1", "a2", "a3"], "b": ["b1"]}, 2, random.Random(0))
    >>> sorted(i[0] for i in picked)  # one of each class before a second of any
    ['a', 'b']
    """
    pools = {c: sorted(ids) for c, ids in ids_by_class.items()}
    for ids in pools.values():
        rng.shuffle(ids)
    order = sorted(pools)
    rng.shuffle(order)
    out: list[str] = []
    while len(out) < n and any(pools[c] for c in order):
        for c in order:
            if pools[c] and len(out) < n:
                out.append(pools[c].pop())
    return out


def _by_class(rows: dict[str, dict], ids) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        out[rows[i]["class"]].append(i)
    return out


def sample_items(cfg: StudyConfig, rows: dict[str, dict[str, dict]]) -> list[dict]:
    """The study's items: per condition, shared questions first, then each condition's own rows."""
    n = cfg.items_per_condition
    for name, r in rows.items():
        if len(r) < n:
            raise ConfigError(f"condition {name!r} has {len(r)} rows in split {cfg.split!r}; "
                              f"items_per_condition is {n}")
    names = [c.name for c in cfg.conditions]
    common = set.intersection(*(set(rows[c]) for c in names))
    first = rows[names[0]]
    shared = balanced_sample(_by_class(first, common), n, random.Random(f"{cfg.seed}:shared"))
    items = []
    for name in names:
        own = sorted(set(rows[name]) - set(shared))
        extra = balanced_sample(_by_class(rows[name], own), n - len(shared), random.Random(f"{cfg.seed}:{name}"))
        for eid in shared + extra:
            items.append({"id": f"{name}:{eid}", "condition": name, "shared": eid in common, **rows[name][eid]})
    return items


def resolve_build_dir(path: str | Path) -> Path:
    """A build folder, or the one build stage of an experiment run (``RUN/stages/build-*/sets``)."""
    path = Path(path)
    if (path / "examples").is_dir() or not (path / "stages").is_dir():
        return path
    found = sorted(p for p in path.glob("stages/build-*/sets") if (p / "examples").is_dir())
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigError(f"{path} is a run folder without a finished build stage")
    raise ConfigError(f"{path} has {len(found)} build stages; pass one of them: "
                      + ", ".join(str(p) for p in found))


def build_study(cfg: StudyConfig, build_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> dict:
    """Write ``out/study.json`` and ``out/manifest.json``; return the manifest.

    A folder that already holds a study is refused unless ``overwrite``; one that holds collected
    responses (``study.db``) is always refused, since new items would orphan them.
    """
    build_dir, out = resolve_build_dir(build_dir), Path(out)
    if not build_dir.is_dir():
        raise ConfigError(f"no build folder {build_dir}")
    if (out / "study.db").exists():
        raise ConfigError(f"{out} already holds collected responses (study.db); build into a new folder")
    if (out / "study.json").exists() and not overwrite:
        raise ConfigError(f"{out} already holds a study; pass --overwrite to replace it")
    sources, rows = {}, {}
    for cond in cfg.conditions:
        path, rows[cond.name] = _load_condition(cfg, cond, build_dir)
        sources[str(path)] = sha256_file(path)
    items = sample_items(cfg, rows)
    write_json(out / "study.json", {"kind": "study", "config": config_dict(cfg), "items": items})
    counts = defaultdict(lambda: defaultdict(int))
    for it in items:
        counts[it["condition"]][it["class"]] += 1
    m = manifest(kind="study", config=config_dict(cfg), seed=cfg.seed,
                 files={"study.json": sha256_file(out / "study.json")},
                 build_dir=str(build_dir), sources=sources,
                 items_per_class={c: dict(v) for c, v in counts.items()},
                 shared_questions=sum(1 for it in items if it["shared"]) // max(1, len(cfg.conditions)))
    write_json(out / "manifest.json", m)
    return m


def load_study(study_dir: str | Path) -> tuple[StudyConfig, list[dict]]:
    """A study folder's config and items (as ``build_study`` wrote them)."""
    path = Path(study_dir) / "study.json"
    if not path.is_file():
        raise ConfigError(f"no study at {study_dir} (expected {path}; run `tracekd study build` first)")

    data = read_json(path)
    cfg = load_study_config(data.get("config") or {})
    items = data.get("items")
    if not isinstance(items, list) or not items:
        raise DataError("no items", path=path, field="items")
    return cfg, items
