"""Loopback load test: 50 participants at once through HTTP against uvicorn on 127.0.0.1.

Afterwards every rating a participant submitted is in the export exactly once and under that participant
only, and the balanced assignment holds (condition group sizes differ by at most 1)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from test_study_support import ADMIN_TOKEN, make_study, serve  # noqa: E402

from tracekd.study.app import create_app  # noqa: E402

N_PARTICIPANTS = 50


async def participant(base: str, k: int, rng_value: int) -> tuple[str, list[tuple[str, int, str, int]]]:
    """One participant's whole visit; returns their Prolific id and the (item, position, statement, value)
    ratings they submitted."""
    pid = f"p{k:04d}"
    sent = []
    async with httpx.AsyncClient(base_url=base, timeout=30.0, follow_redirects=False) as c:
        r = await c.get(f"/start?PROLIFIC_PID={pid}&STUDY_ID=load&SESSION_ID=s{k}")
        assert r.status_code == 200
        r = await c.post("/consent", data={"consent": "yes", "PROLIFIC_PID": pid, "STUDY_ID": "load",
                                           "SESSION_ID": f"s{k}"})
        assert r.status_code == 303, r.text
        assert (await c.post("/instructions")).status_code == 303
        loc = (await c.get("/page")).headers["location"]
        while loc.startswith("/item/"):
            page = await c.get(loc)
            assert page.status_code == 200
            item = re.search(r'name="item" value="([^"]+)"', page.text).group(1)
            names = list(dict.fromkeys(re.findall(r'name="(s_[^"]+)"', page.text)))
            pos = int(loc.rsplit("/", 1)[1])
            data = {"item": item}
            for j, n in enumerate(names):
                value = 1 if n == "s_attention" else 1 + (rng_value + j + pos) % 5
                data[n] = str(value)
                sent.append((item, pos, n[2:], value))
            r = await c.post(loc, data=data)
            assert r.status_code == 303, r.text
            loc = r.headers["location"]
            if loc == "/done":
                r = await c.get("/done")
                assert r.status_code == 303 and "cc=C0DE42" in r.headers["location"]
                break
    return pid, sent


def test_fifty_concurrent_participants(tmp_path):
    study = make_study(tmp_path, items_per_participant=3)
    app = create_app(study, admin_token=ADMIN_TOKEN)

    async def everyone(base):
        return await asyncio.wait_for(
            asyncio.gather(*(participant(base, k, k * 7) for k in range(N_PARTICIPANTS))), timeout=90)

    with serve(app) as base:
        t0 = time.monotonic()
        results = asyncio.run(everyone(base))
        elapsed = time.monotonic() - t0
        export = httpx.get(f"{base}/admin/export/responses.jsonl",
                           headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30).text
        people = httpx.get(f"{base}/admin/export/participants.jsonl",
                           headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30).text
    import json

    rows = [json.loads(x) for x in export.splitlines()]
    parts = {p["participant"]: p for p in map(json.loads, people.splitlines())}
    by_pid = {p["prolific_pid"]: p["participant"] for p in parts.values()}
    assert len(parts) == N_PARTICIPANTS and all(p["answered"] == 3 and not p["incomplete"] for p in parts.values())

    exported = Counter((r["participant"], r["item_id"], r["position"], r["statement"], r["value"]) for r in rows)
    submitted = Counter((by_pid[pid], item, pos, stmt, value) for pid, sent in results for item, pos, stmt, value in sent)
    assert exported == submitted  # every rating exactly once, under the participant who gave it
    assert all(n == 1 for n in exported.values())
    assert len(rows) == N_PARTICIPANTS * (3 * 4 + 1)

    sizes = Counter(p["condition"] for p in parts.values())
    assert len(sizes) == 4 and max(sizes.values()) - min(sizes.values()) <= 1
    for r in rows:  # nobody rated an item outside their own condition
        assert r["item_id"].split(":")[0] == parts[r["participant"]]["condition"]
    print(f"{N_PARTICIPANTS} participants, {len(rows)} ratings in {elapsed:.1f} s")


def test_one_page_submitted_many_times_at_once_is_stored_once(tmp_path):
    study = make_study(tmp_path, items_per_participant=2)
    app = create_app(study, admin_token=ADMIN_TOKEN)

    async def race(base):
        async with httpx.AsyncClient(base_url=base, timeout=30.0, follow_redirects=False) as c:
            await c.get("/start")
            await c.post("/consent", data={"consent": "yes"})
            await c.post("/instructions")
            page = await c.get("/item/0")
            item = re.search(r'name="item" value="([^"]+)"', page.text).group(1)
            names = list(dict.fromkeys(re.findall(r'name="(s_[^"]+)"', page.text)))
            forms = [{"item": item, **{n: str(1 + (k + j) % 5) for j, n in enumerate(names)}} for k in range(8)]
            return await asyncio.wait_for(asyncio.gather(*(c.post("/item/0", data=f) for f in forms)), 60)

    with serve(app) as base:
        answers = asyncio.run(race(base))
    codes = sorted(r.status_code for r in answers)
    assert codes == [303] + [409] * 7
    rows = app.state.store.all_responses()
    assert len(rows) == len({(r["position"], r["statement_id"]) for r in rows}) and {r["position"] for r in rows} == {0}
    assert len({r["answered_at"] for r in rows}) == 1  # one submit's answers, not a mix
