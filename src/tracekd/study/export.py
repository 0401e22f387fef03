"""Export a study's data: responses (one row per participant x page x statement), participants with
exclusion flags, and the codebook, as CSV and JSONL.

Exclusion flags per participant: ``failed_attention`` (an attention check answered other than instructed),
``too_fast`` (median seconds per page below the config's ``min_median_seconds``), ``incomplete`` (did
not reach the end); ``excluded`` is any of them. Participants are identified by their random public id;
Prolific ids appear only in the participants table (drop them with ``--drop-prolific-ids``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import DataError
from ..io import dumps, iter_jsonl, manifest, sha256_file, write_json, write_text
from .config import StudyConfig, config_dict
from .store import StudyStore, median_seconds

TABLES = ("responses", "participants", "codebook")

RESPONSE_COLUMNS = {
    "participant": "public random id of the participant",
    "condition": "condition of the item (the trace type)",
    "item_id": "study item id (condition:example id)",
    "example_id": "dataset example id",
    "class": "dataset class of the example",
    "position": "page number in this participant's order (0 = first)",
    "kind": "likert (a rated statement) or attention (an instructed-response check)",
    "statement": "Likert item or attention check id",
    "scale": "scale the Likert item scores (empty for attention checks)",
    "value": "rating, 1 (lowest label) to the number of points",
    "seconds": "seconds from first showing the page to submitting it (empty if never shown)",
    "answered_at": "submission time, Unix seconds",
}
PARTICIPANT_COLUMNS = {
    "participant": "public random id",
    "condition": "assigned condition (within-subjects: 'within')",
    "prolific_pid": "Prolific participant id from the link (empty when not from Prolific)",
    "prolific_study_id": "Prolific study id from the link",
    "prolific_session_id": "Prolific session id from the link",
    "pages": "item pages assigned",
    "answered": "item pages answered",
    "median_seconds": "median seconds per answered page",
    "started_at": "consent time, Unix seconds",
    "completed_at": "completion time, Unix seconds (empty if not completed)",
    "failed_attention": "true if any attention check was answered other than instructed",
    "too_fast": "true if median_seconds is below the study's min_median_seconds",
    "incomplete": "true if the participant did not finish",
    "excluded": "failed_attention or too_fast or incomplete",
}


def collect(store: StudyStore, *, drop_prolific_ids: bool = False) -> dict[str, list[dict]]:
    """Responses, participants (with exclusion flags) and codebook rows from the database."""
    cfg, items = store.cfg, store.items
    scale = {it.id: it.scale or it.id for it in cfg.likert_items}
    expected = {a.id: a.expected for a in cfg.attention_checks}
    people = store.all_participants()
    by_id = {p["id"]: p for p in people}
    out_resp, per_person = [], {p["id"]: [] for p in people}
    for r in store.all_responses():
        p = by_id[r["participant_id"]]
        item = items.get(r["item_id"], {})
        row = {"participant": p["public_id"], "condition": item.get("condition", ""), "item_id": r["item_id"],
               "example_id": item.get("example_id", ""), "class": item.get("class", ""),
               "position": r["position"], "kind": "attention" if r["statement_id"] in expected else "likert",
               "statement": r["statement_id"], "scale": scale.get(r["statement_id"], ""), "value": r["value"],
               "seconds": r["seconds"], "answered_at": r["answered_at"]}
        out_resp.append(row)
        per_person[p["id"]].append(row)
    out_people = []
    for p in people:
        rows = per_person[p["id"]]
        n_pages = len(json.loads(p["pages"]))
        secs = {r["position"]: r["seconds"] for r in rows}
        med = median_seconds(list(secs.values()))
        failed = any(r["value"] != expected[r["statement"]] for r in rows if r["kind"] == "attention")
        too_fast = med is not None and med < cfg.min_median_seconds
        incomplete = p["completed_at"] is None
        out_people.append({
            "participant": p["public_id"], "condition": p["condition"],
            "prolific_pid": None if drop_prolific_ids else p["prolific_pid"],
            "prolific_study_id": None if drop_prolific_ids else p["prolific_study_id"],
            "prolific_session_id": None if drop_prolific_ids else p["prolific_session_id"],
            "pages": n_pages, "answered": p["position"], "median_seconds": med,
            "started_at": p["created_at"], "completed_at": p["completed_at"],
            "failed_attention": failed, "too_fast": too_fast, "incomplete": incomplete,
            "excluded": failed or too_fast or incomplete})
    return {"responses": out_resp, "participants": out_people, "codebook": codebook(cfg)}


def codebook(cfg: StudyConfig) -> list[dict]:
    """One row per exported column, Likert item, attention check, scale point and condition."""
    rows = [{"kind": "column", "name": f"responses.{k}", "text": v, "scale": "", "value": ""}
            for k, v in RESPONSE_COLUMNS.items()]
    rows += [{"kind": "column", "name": f"participants.{k}", "text": v, "scale": "", "value": ""}
             for k, v in PARTICIPANT_COLUMNS.items()]
    rows += [{"kind": "likert_item", "name": it.id, "text": it.text, "scale": it.scale or it.id,
              "value": "reverse-keyed" if it.reverse else ""} for it in cfg.likert_items]
    rows += [{"kind": "attention_check", "name": a.id, "text": a.text, "scale": "", "value": a.expected}
             for a in cfg.attention_checks]
    rows += [{"kind": "scale_point", "name": str(i), "text": label, "scale": "", "value": i}
             for i, label in enumerate(cfg.scale_labels, start=1)]
    rows += [{"kind": "condition", "name": c.name, "text": c.label, "scale": "", "value": c.arm}
             for c in cfg.conditions]
    return rows


def to_csv(rows: list[dict]) -> str:
    """
    >>> to_csv([{"a": 1, "b": None}, {"a": "x,y", "b": True}])
    'a,b\\r\\n1,\\r\\n"x,y",true\\r\\n'
    """
    buf = io.StringIO()
    if not rows:
        return ""
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: ("true" if v is True else "false" if v is False else v) for k, v in r.items()})
    return buf.getvalue()


def to_jsonl(rows: list[dict]) -> str:
    return "".join(dumps(r) + "\n" for r in rows)


def write_export(store: StudyStore, out: str | Path, *, formats=("csv", "jsonl"),
                 drop_prolific_ids: bool = False) -> dict:
    """Write ``{responses,participants,codebook}.{csv,jsonl}`` and a manifest into ``out``."""
    out = Path(out)
    data = collect(store, drop_prolific_ids=drop_prolific_ids)
    files = {}
    for name in TABLES:
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            write_text(path, to_csv(data[name]) if fmt == "csv" else to_jsonl(data[name]))
            files[path.name] = sha256_file(path)
    counts = {"participants": len(data["participants"]), "responses": len(data["responses"]),
              **{f: sum(1 for p in data["participants"] if p[f])
                 for f in ("failed_attention", "too_fast", "incomplete", "excluded")}}
    m = manifest(kind="study-export", config=config_dict(store.cfg), seed=store.cfg.seed, files=files,
                 database=_redact(store.url), counts=counts, prolific_ids_dropped=drop_prolific_ids)

    write_json(out / "manifest.json", m)
    return m


def _redact(url: str) -> str:
    """A database URL without its password.

    >>> _redact("postgresql://study:secret@db/ratings")
    'postgresql://study:***@db/ratings'
    """
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


def read_export(folder: str | Path, cfg: StudyConfig) -> dict[str, list[dict]]:
    """``responses`` and ``participants`` of an export folder (JSONL), checked: a row with a missing field, an
    unknown condition or statement, or a value off the scale is a DataError naming file, line and field."""
    folder = Path(folder)
    conds = {c.name for c in cfg.conditions}
    stmts = {it.id for it in cfg.likert_items} | {a.id for a in cfg.attention_checks}
    responses, people = [], []
    path = folder / "responses.jsonl"
    for line, r in iter_jsonl(path):
        def bad(field: str, msg: str) -> DataError:
            return DataError(msg, path=path, line=line, field=field)

        for k in ("participant", "item_id", "statement", "condition"):
            if not isinstance(r.get(k), str):
                raise bad(k, "missing or not a string")
        if r["condition"] not in conds:
            raise bad("condition", f"unknown condition {r['condition']!r}")
        if r["statement"] not in stmts:
            raise bad("statement", f"unknown statement {r['statement']!r}")
        value = r.get("value")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cfg.points:
            raise bad("value", f"must be a whole number from 1 to {cfg.points}")
        responses.append(r)
    path = folder / "participants.jsonl"
    for line, p in iter_jsonl(path):
        if not isinstance(p.get("participant"), str):
            raise DataError("missing or not a string", path=path, line=line, field="participant")
        for k in ("excluded", "failed_attention", "too_fast", "incomplete"):
            if not isinstance(p.get(k), bool):
                raise DataError("must be true or false", path=path, line=line, field=k)
        people.append(p)
    return {"responses": responses, "participants": people}
