"""Turn an experiment config into an ordered plan of stages, each keyed by what it depends on.

A stage's key hashes its config slice, the keys of the stages it reads, the hashes of raw input
files and the tracekd version. Its outputs live in ``RUN/stages/<kind>-<key>/`` and a ``DONE.json``
written last marks it finished, so a re-run skips finished stages and resumes unfinished ones;
changing anything a stage depends on gives it (and everything downstream) a new key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__
from ..fingerprint import Fingerprint
from ..io import sha256_text, sha256_tree
from ..teacher.stages import build_spec_additions, teacher_stage_spec
from ..traces.corrupt import BASELINE_ARMS
from .config import DatasetEntry, ExperimentConfig


@dataclass
class Stage:
    kind: str  # synth | build | train | generate | score
    label: str  # human-readable, e.g. "train babi/smollm2-135m/correct/seed0"
    key: str
    spec: dict  # the config slice this stage runs with (JSON-able)
    deps: list["Stage"] = field(default_factory=list)
    cell: dict = field(default_factory=dict)  # dataset/student/arm/seed this stage belongs to

    def dir(self, run_dir: Path) -> Path:
        return run_dir / "stages" / f"{self.kind}-{self.key}"

    @property
    def dirname(self) -> str:
        """The stage folder's name under ``RUN/stages/`` (unique within a run)."""
        return f"{self.kind}-{self.key}"

    def done(self, run_dir: Path) -> bool:
        return (self.dir(run_dir) / "DONE.json").exists()

    def input(self, kind: str) -> "Stage":
        """The upstream stage of ``kind`` this stage reads (dependencies are named by their kind)."""
        found = self.optional_input(kind)
        if found is None:
            raise KeyError(f"{self.label} has no {kind} input (inputs: {[d.kind for d in self.deps]})")
        return found

    def optional_input(self, kind: str) -> Stage | None:
        """The upstream stage of ``kind``, or None for a stage that reads none (a build without a synth stage,
        a zero-shot baseline's generate stage without a train stage)."""
        return next((d for d in self.deps if d.kind == kind), None)

    def to_dict(self) -> dict:
        """JSON form (``plan.json``): dependencies by folder name, so a worker can rebuild the graph."""
        return {"label": self.label, "kind": self.kind, "key": self.key, "cell": self.cell, "spec": self.spec,
                "dir": f"stages/{self.dirname}", "deps": [d.dirname for d in self.deps]}


def stages_from_dicts(items: list[dict]) -> list[Stage]:
    """Rebuild the stage graph written by :meth:`Stage.to_dict` (in the same order).

    >>> a = Stage("synth", "synth babi", "k1", {"n": 1})
    >>> b = Stage("build", "build babi/seed0", "k2", {}, [a])
    >>> [s.input("synth").key for s in stages_from_dicts([a.to_dict(), b.to_dict()])[1:]]
    ['k1']
    """
    by_dir: dict[str, Stage] = {}
    out = []
    for it in items:
        s = Stage(it["kind"], it["label"], it["key"], it["spec"], [by_dir[d] for d in it["deps"]], it.get("cell", {}))
        by_dir[s.dirname] = s
        out.append(s)
    return out


def stage_key(kind: str, spec: dict, deps: list[Stage], inputs: dict[str, str] | None = None) -> str:
    """Hash of everything a stage's output depends on.

    >>> stage_key("build", {"a": 1}, []) == stage_key("build", {"a": 1}, [])
    True
    >>> stage_key("build", {"a": 1}, []) == stage_key("build", {"a": 2}, [])
    False
    """
    return Fingerprint({"kind": kind, "spec": spec, "deps": [d.key for d in deps], "inputs": inputs or {},
                        "version": __version__}).key()


def _data_stage(entry: DatasetEntry) -> tuple[Stage | None, dict]:
    """The synth stage of a dataset (if generated) and the hashes of its raw files (if read)."""
    if entry.synth is not None:
        spec = asdict(entry.synth)
        return Stage("synth", f"synth {entry.synth.generator}", stage_key("synth", spec, []), spec), {}
    path = Path(entry.data)
    return None, ({"data": sha256_text(json.dumps(sha256_tree([path]), sort_keys=True))} if path.exists() else {})


def make_plan(config: ExperimentConfig) -> list[Stage]:
    """All stages in an order that respects their dependencies."""
    stages: list[Stage] = []
    for entry in config.datasets:
        synth, inputs = _data_stage(entry)
        if synth:
            stages.append(synth)
        options = dict(entry.options)
        if entry.synth is not None and entry.synth.generator == "babi" and entry.synth.tasks != "all":
            options.setdefault("tasks", entry.synth.tasks)  # load just the generated tasks
        teacher = None
        if config.teacher is not None:  # one per dataset: the builds of every seed read its responses
            spec = teacher_stage_spec(config.teacher, config.arms, {
                "dataset": entry.name, "data": None if synth else entry.data, "options": options,
                "template": entry.template, "max_train": entry.max_train, "max_test": entry.max_test,
                "subset_seed": entry.subset_seed})
            tdeps = [synth] if synth else []
            teacher = Stage("teacher", f"teacher {entry.name}", stage_key("teacher", spec, tdeps, inputs), spec,
                            tdeps, {"dataset": entry.name})
            stages.append(teacher)
        for seed in config.seeds:
            bspec = {"dataset": entry.name, "data": None if synth else entry.data, "options": options,
                     "arms": list(config.arms), "seed": seed, "template": entry.template,
                     "max_train": entry.max_train, "max_test": entry.max_test, "subset_seed": entry.subset_seed}
            deps = [synth] if synth else []
            if teacher is not None:
                bspec.update(build_spec_additions(config.teacher))
                deps.append(teacher)
            build = Stage("build", f"build {entry.name}/seed{seed}", stage_key("build", bspec, deps, inputs),
                          bspec, deps, {"dataset": entry.name, "seed": seed})
            stages.append(build)
            for student in config.students:
                for arm in config.arms:
                    cell = {"dataset": entry.name, "student": student, "arm": arm, "seed": seed}
                    name = f"{entry.name}/{student}/{arm}/seed{seed}"
                    tspec = {"student": student, "arm": arm, "seed": seed, "settings": config.stage_settings("train")}
                    train = Stage("train", f"train {name}", stage_key("train", tspec, [build]), tspec, [build], cell)
                    gspec = {"student": student, "arm": arm, "seed": seed,
                             "settings": config.stage_settings("generate")}
                    gdeps = [build] if arm in BASELINE_ARMS else [train, build]  # baselines: the untrained student
                    gen = Stage("generate", f"generate {name}", stage_key("generate", gspec, gdeps),
                                gspec, gdeps, cell)
                    sspec = {"scorer": entry.scorer, "template": entry.template,
                             "trace_definition": config.trace_definition}
                    if config.teacher is not None and config.teacher.prompts:
                        sspec["teacher_prompts"] = config.teacher.prompts  # class synonyms of the free-form measures
                    score = Stage("score", f"score {name}", stage_key("score", sspec, [gen, build]), sspec,
                                  [gen, build], cell)
                    stages += [gen, score] if arm in BASELINE_ARMS else [train, gen, score]
    return stages
