"""The study's database (SQLAlchemy Core) and the participant flow's transactions.

SQLite in the study folder by default (WAL journal, every transaction ``BEGIN IMMEDIATE`` so concurrent
requests queue instead of failing), or any SQLAlchemy URL (PostgreSQL for a central server). Tables:

- ``participants``: an opaque public id, the sha256 of the session token (the token itself is never
  stored), condition, the seeded page list, position, Prolific ids when given, timestamps;
- ``page_views``: when each page was first shown (time on page = answer time - first shown);
- ``responses``: one row per participant x page x statement, unique, so an answer is stored once.

Rejected requests raise :class:`Rejected` (with the HTTP status the app returns) before anything is
written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import secrets
import statistics
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from .config import StudyConfig

metadata = sa.MetaData()

participants = sa.Table(
    "participants", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("public_id", sa.String(32), nullable=False, unique=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("condition", sa.String(200), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("pages", sa.Text, nullable=False),
    sa.Column("position", sa.Integer, nullable=False, default=0),
    sa.Column("prolific_pid", sa.String(64), unique=True),
    sa.Column("prolific_study_id", sa.String(64)),
    sa.Column("prolific_session_id", sa.String(64)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("instructions_at", sa.Float),
    sa.Column("completed_at", sa.Float),
)

page_views = sa.Table(
    "page_views", metadata,
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("shown_at", sa.Float, nullable=False),
)

responses = sa.Table(
    "responses", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("item_id", sa.String(300), nullable=False),
    sa.Column("statement_id", sa.String(200), nullable=False),
    sa.Column("value", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float),
    sa.Column("answered_at", sa.Float, nullable=False),
    sa.UniqueConstraint("participant_id", "position", "statement_id", name="one_answer"),
)


class Rejected(Exception):
    """A request that changes nothing: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def token_hash(token: str) -> str:
    """
    >>> token_hash("abc")[:8]
    'ba7816bf'
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def default_url(study_dir: str | Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / 'study.db'}"


def make_engine(url: str) -> sa.Engine:
    """An engine; SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` transactions."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let the 'begin' hook below issue BEGIN
        cur = dbapi_conn.cursor()
        if ":memory:" not in url:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def plan_pages(cfg: StudyConfig, items: list[dict], conditions: list[str], seq: int, order_seed: str) -> list[dict]:
    """The pages of the ``seq``-th participant of ``conditions`` (one for between-subjects, all for within).

    Each condition's items are permuted once by the study seed; participant ``seq`` takes the next
    window of that permutation (so every item is rated equally often, +-1), then the pages are put in an
    order seeded by ``order_seed`` and the attention checks placed on seeded pages.

    >>> from tracekd.study.config import load_study_config
    >>> cfg = load_study_config(overrides={"conditions": [{"name": "a"}], "items_per_condition": 4,
    ...                                    "items_per_participant": 2})
    >>> items = [{"id": f"a:{i}", "condition": "a"} for i in range(4)]
    >>> first, second = (plan_pages(cfg, items, ["a"], seq, str(seq)) for seq in (0, 1))
    >>> sorted(p["item"] for p in first + second)  # two participants see all four items once
    ['a:0', 'a:1', 'a:2', 'a:3']
    >>> sum("attention" in p["statements"] for p in first)
    1
    """
    m = cfg.pages_per_condition()
    chosen = []
    for cond in conditions:
        pool = sorted(it["id"] for it in items if it["condition"] == cond)
        random.Random(f"{cfg.seed}:pool:{cond}").shuffle(pool)
        start = (seq * m) % len(pool)
        chosen += [pool[(start + j) % len(pool)] for j in range(m)]
    rng = random.Random(f"{cfg.seed}:order:{order_seed}")
    rng.shuffle(chosen)
    pages = [{"item": i, "statements": [it.id for it in cfg.likert_items]} for i in chosen]
    for check, page in zip(cfg.attention_checks, rng.sample(range(len(pages)), len(cfg.attention_checks))):
        stmts = pages[page]["statements"]
        stmts.insert(rng.randrange(len(stmts) + 1), check.id)
    return pages


class StudyStore:
    """The participant flow on one database: every method is one transaction."""

    def __init__(self, url: str, cfg: StudyConfig, items: list[dict]):
        self.url = url
        self.cfg = cfg
        self.items = {it["id"]: it for it in items}
        self.item_list = items
        self.engine = make_engine(url)
        metadata.create_all(self.engine)
        self._assign_lock = threading.Lock()
        self._valid = {it.id for it in cfg.likert_items} | {a.id for a in cfg.attention_checks}

    # ---------------------------------------------------------------- participants
    def participant(self, token: str | None):
        """The participant a session token belongs to, or None (unknown or forged token)."""
        if not token or len(token) > 200:
            return None
        with self.engine.begin() as conn:
            return conn.execute(sa.select(participants).where(
                participants.c.token_hash == token_hash(token))).first()

    def create_participant(self, prolific: dict[str, str | None], now: float | None = None):
        """Assign a new participant (balanced: least-filled condition, ties by seeded random); return
        ``(token, row)``. The same Prolific id twice is rejected (409)."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        names = [c.name for c in self.cfg.conditions]
        with self._assign_lock, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("LOCK TABLE participants IN SHARE ROW EXCLUSIVE MODE")
            pid = prolific.get("prolific_pid")
            if pid and conn.execute(sa.select(participants.c.id).where(participants.c.prolific_pid == pid)).first():
                raise Rejected(409, "This Prolific ID has already started the study. Please continue in the "
                                    "browser you started in.")
            counts = dict(conn.execute(sa.select(participants.c.condition, sa.func.count())
                                       .group_by(participants.c.condition)).all())
            total = sum(counts.values())
            if self.cfg.design == "between":
                least = min(counts.get(n, 0) for n in names)
                tied = [n for n in names if counts.get(n, 0) == least]
                condition = random.Random(f"{self.cfg.seed}:assign:{total}").choice(tied)
                seq, conds = least, [condition]
            else:
                condition, seq, conds = "within", total, names
            pages = plan_pages(self.cfg, self.item_list, conds, seq, order_seed=str(total))
            values = dict(public_id=secrets.token_hex(8), token_hash=token_hash(token), condition=condition,
                          seq=seq, pages=json.dumps(pages), position=0, created_at=now,
                          prolific_pid=pid, prolific_study_id=prolific.get("prolific_study_id"),
                          prolific_session_id=prolific.get("prolific_session_id"))
            new_id = conn.execute(participants.insert().values(**values)).inserted_primary_key[0]
            row = conn.execute(sa.select(participants).where(participants.c.id == new_id)).one()
        return token, row

    def mark_instructions(self, participant_id: int, now: float | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(participants.update().where(participants.c.id == participant_id)
                         .where(participants.c.instructions_at.is_(None))
                         .values(instructions_at=time.time() if now is None else now))

    def view_page(self, participant_id: int, position: int, now: float | None = None) -> None:
        """Record when a page was first shown (later views keep the first time)."""
        with contextlib.suppress(sa.exc.IntegrityError), self.engine.begin() as conn:
            seen = conn.execute(sa.select(page_views.c.position).where(
                page_views.c.participant_id == participant_id, page_views.c.position == position)).first()
            if not seen:  # a concurrent first view may still win on a server without IMMEDIATE: kept, suppressed
                conn.execute(page_views.insert().values(participant_id=participant_id, position=position,
                                                        shown_at=time.time() if now is None else now))

    def answer(self, participant_id: int, position: int, item_id: str, form: list[tuple[str, str]],
               now: float | None = None) -> int:
        """Store one page's ratings (all or nothing); return the next position.

        ``form`` is the submitted (field, value) pairs: ``item`` plus one ``s_<statement>`` per statement.
        """
        now = time.time() if now is None else now
        points = self.cfg.points
        with self.engine.begin() as conn:
            p = conn.execute(sa.select(participants).where(participants.c.id == participant_id)).one()
            pages = json.loads(p.pages)
            if not 0 <= position < len(pages):
                raise Rejected(404, f"no page {position}")
            if p.instructions_at is None:
                raise Rejected(409, "the instructions come first")
            if position < p.position:
                raise Rejected(409, "this page was already answered; answers cannot be changed")
            if position > p.position:
                raise Rejected(409, "answer the pages in order")
            page = pages[position]
            if item_id != page["item"]:
                raise Rejected(422, "this item is not on this page")
            values: dict[str, int] = {}
            for name, raw in form:
                if name == "item":
                    continue
                sid = name[2:] if name.startswith("s_") else None
                if sid is None or sid not in self._valid:
                    raise Rejected(422, f"unknown field {name!r}")
                if sid not in page["statements"]:
                    raise Rejected(422, f"statement {sid!r} is not on this page")
                if sid in values:
                    raise Rejected(422, f"statement {sid!r} answered twice")
                if not raw.isdigit() or not 1 <= int(raw) <= points:
                    raise Rejected(422, f"statement {sid!r}: value must be a whole number from 1 to {points}")
                values[sid] = int(raw)
            missing = [s for s in page["statements"] if s not in values]
            if missing:
                raise Rejected(422, "please rate every statement (missing: " + ", ".join(missing) + ")")
            shown = conn.execute(sa.select(page_views.c.shown_at).where(
                page_views.c.participant_id == participant_id, page_views.c.position == position)).scalar()
            seconds = round(now - shown, 3) if shown is not None else None
            try:
                conn.execute(responses.insert(), [
                    dict(participant_id=participant_id, position=position, item_id=item_id, statement_id=s,
                         value=v, seconds=seconds, answered_at=now) for s, v in values.items()])
            except sa.exc.IntegrityError:  # the same page stored by a concurrent submit (servers without IMMEDIATE)
                raise Rejected(409, "this page was already answered") from None
            done = conn.execute(participants.update().where(participants.c.id == participant_id)
                                .where(participants.c.position == position)
                                .values(position=position + 1)).rowcount
            if done != 1:  # a concurrent submit of the same page won (only possible without IMMEDIATE)
                raise Rejected(409, "this page was already answered")
        return position + 1

    def complete(self, participant_id: int, now: float | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(participants.update().where(participants.c.id == participant_id)
                         .where(participants.c.completed_at.is_(None))
                         .values(completed_at=time.time() if now is None else now))

    # ---------------------------------------------------------------- reading everything (admin, export)
    def all_participants(self) -> list[dict]:
        with self.engine.begin() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(participants).order_by(participants.c.id))]

    def all_responses(self) -> list[dict]:
        with self.engine.begin() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(responses).order_by(responses.c.participant_id, responses.c.position, responses.c.id))]

    def progress(self) -> list[dict]:
        """Per condition: assigned, completed, in progress."""
        rows = self.all_participants()
        names = [c.name for c in self.cfg.conditions] if self.cfg.design == "between" else ["within"]
        out = []
        for n in names:
            mine = [r for r in rows if r["condition"] == n]
            done = sum(1 for r in mine if r["completed_at"] is not None)
            out.append({"condition": n, "assigned": len(mine), "completed": done, "in_progress": len(mine) - done})
        return out

    def dispose(self) -> None:
        self.engine.dispose()


def median_seconds(seconds: list[float | None]) -> float | None:
    """
    >>> median_seconds([3.0, None, 5.0, 10.0])
    5.0
    >>> median_seconds([None]) is None
    True
    """
    known = [s for s in seconds if s is not None]
    return statistics.median(known) if known else None
