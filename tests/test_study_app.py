"""The study web app in-process (Starlette's TestClient): the participant flow, sessions, bad input,
admin pages, export. The browser and concurrent-load tests are in test_study_browser/test_study_load."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient  # noqa: E402
from test_study_support import ADMIN_TOKEN, make_study  # noqa: E402

from tracekd.study.app import COOKIE, create_app  # noqa: E402
from tracekd.study.export import collect  # noqa: E402


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("study"))


@pytest.fixture
def app(study_dir, tmp_path):
    return create_app(study_dir, db_url=f"sqlite:///{tmp_path / 'study.db'}", admin_token=ADMIN_TOKEN)


def client(app) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)


def form_of(html: str) -> tuple[str, str, list[str]]:
    """(action, item id, statement field names) of an item page."""
    action = re.search(r'<form method="post" action="([^"]+)"', html).group(1)
    item = re.search(r'name="item" value="([^"]+)"', html).group(1)
    names = list(dict.fromkeys(re.findall(r'name="(s_[^"]+)"', html)))
    return action, item, names


def answers(names: list[str], value: int = 4) -> dict[str, str]:
    return {n: ("1" if n == "s_attention" else str(value)) for n in names}


def enter(c: TestClient, pid: str | None = None) -> None:
    q = f"?PROLIFIC_PID={pid}&STUDY_ID=st1&SESSION_ID=se1" if pid else ""
    assert c.get("/start" + q).status_code == 200
    data = {"consent": "yes", **({"PROLIFIC_PID": pid, "STUDY_ID": "st1", "SESSION_ID": "se1"} if pid else {})}
    r = c.post("/consent", data=data)
    assert r.status_code == 303 and r.headers["location"] == "/instructions"
    assert c.post("/instructions").status_code == 303


def current_page(c: TestClient):
    r = c.get("/page")
    assert r.status_code == 303
    return r.headers["location"]


def finish(c: TestClient, value: int = 4) -> str:
    """Answer every page; return where /done redirects."""
    while True:
        loc = current_page(c)
        if loc == "/done":
            return c.get("/done").headers["location"]
        r = c.get(loc)
        assert r.status_code == 200
        action, item, names = form_of(r.text)
        assert c.post(action, data={"item": item, **answers(names, value)}).status_code == 303


def counts(app) -> tuple[int, int, list[int]]:
    store = app.state.store
    people = store.all_participants()
    return len(people), len(store.all_responses()), [p["position"] for p in people]


def test_consent_to_completion_redirect_with_prolific_ids_recorded(app):
    c = client(app)
    r = c.get("/start?PROLIFIC_PID=5f1a2b&STUDY_ID=st1&SESSION_ID=se1")
    assert 'name="PROLIFIC_PID" value="5f1a2b"' in r.text and "consent" in r.text.lower()
    r = c.post("/consent", data={"consent": "yes", "PROLIFIC_PID": "5f1a2b", "STUDY_ID": "st1", "SESSION_ID": "se1"})
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    token = c.cookies[COOKIE]
    assert len(token) >= 40
    assert "Instructions" in c.get("/instructions").text
    c.post("/instructions")
    page = c.get(current_page(c))
    assert "Page 1 of 2" in page.text and "<progress" in page.text
    assert "script" not in page.text and "default-src 'none'" in page.headers["content-security-policy"]
    # every statement's radios are labelled, native inputs (keyboard: Tab to a group, arrows within it)
    assert page.text.count('type="radio"') == 5 * len(form_of(page.text)[2])
    assert page.text.count("<legend") == len(form_of(page.text)[2])
    assert finish(c) == "https://app.prolific.com/submissions/complete?cc=C0DE42"
    (p,) = app.state.store.all_participants()
    assert (p["prolific_pid"], p["prolific_study_id"], p["prolific_session_id"]) == ("5f1a2b", "st1", "se1")
    assert p["completed_at"] is not None and p["token_hash"] != token  # only a hash is stored
    data = collect(app.state.store)
    assert len(data["responses"]) == 2 * 4 + 1  # 2 pages x 4 statements + 1 attention check
    assert all(r["seconds"] is not None and r["seconds"] >= 0 for r in data["responses"])
    # after completion, the link leads back to the completion redirect, never to a new session
    assert c.get("/start").headers["location"] == "/done"


def test_reload_resumes_and_time_on_page_counts_from_first_view(app):
    c = client(app)
    enter(c)
    loc = current_page(c)
    first = c.get(loc).text
    again = c.get(loc).text  # reload: the same page, same item
    assert form_of(first) == form_of(again)
    action, item, names = form_of(first)
    c.post(action, data={"item": item, **answers(names)})
    assert current_page(c) == "/item/1"
    assert c.get("/item/0").headers["location"] == "/item/1"  # an answered page is not shown again
    assert c.get("/start").headers["location"] == "/item/1"  # the study link resumes too
    with app.state.store.engine.connect() as conn:
        views = conn.exec_driver_sql("select position from page_views").scalars().all()
    assert views == [0]  # item 0 viewed twice, recorded once; item 1 not shown yet (only redirected to)


def test_balanced_assignment_and_seeded_order(study_dir, tmp_path):
    app = create_app(study_dir, db_url=f"sqlite:///{tmp_path / 'a.db'}", admin_token=ADMIN_TOKEN)
    for _ in range(10):
        enter(client(app))
    people = app.state.store.all_participants()
    sizes = Counter(p["condition"] for p in people)
    assert set(sizes) == {"decomposed", "teacher-trace", "teacher-summary", "teacher-explanation"}
    assert max(sizes.values()) - min(sizes.values()) <= 1
    # the same arrivals in a fresh database: the same conditions and page orders (seeded)
    app2 = create_app(study_dir, db_url=f"sqlite:///{tmp_path / 'b.db'}", admin_token=ADMIN_TOKEN)
    for _ in range(10):
        enter(client(app2))
    again = app2.state.store.all_participants()
    assert [(p["condition"], p["pages"]) for p in people] == [(p["condition"], p["pages"]) for p in again]
    for p in people:
        pages = json.loads(p["pages"])
        assert all(pg["item"].startswith(p["condition"] + ":") for pg in pages)
        assert sum("attention" in pg["statements"] for pg in pages) == 1


def test_within_subjects_rates_every_condition(tmp_path):
    study = make_study(tmp_path, design="within", items_per_participant=4)
    app = create_app(study, admin_token=ADMIN_TOKEN)
    c = client(app)
    enter(c)
    finish(c)
    (p,) = app.state.store.all_participants()
    assert p["condition"] == "within"
    assert {pg["item"].split(":")[0] for pg in json.loads(p["pages"])} == {
        "decomposed", "teacher-trace", "teacher-summary", "teacher-explanation"}
    assert (tmp_path / "study" / "study.db").is_file()  # the default store: SQLite in the study folder
    with app.state.store.engine.connect() as conn:
        mode = conn.exec_driver_sql("pragma journal_mode").scalar()
    assert mode == "wal"


@pytest.mark.parametrize("case", ["out_of_range", "zero", "not_a_number", "unknown_item", "unknown_statement",
                                  "missing_field", "missing_item", "page_out_of_range", "future_page",
                                  "duplicate_field"])
def test_bad_answers_get_4xx_and_change_nothing(app, case):
    c = client(app)
    enter(c)
    action, item, names = form_of(c.get(current_page(c)).text)
    data = {"item": item, **answers(names)}
    url = action
    if case == "out_of_range":
        data[names[0]] = "6"
    elif case == "zero":
        data[names[0]] = "0"
    elif case == "not_a_number":
        data[names[0]] = "4.5"
    elif case == "unknown_item":
        data["item"] = "decomposed:no-such-example"
    elif case == "unknown_statement":
        data["s_made_up"] = "3"
    elif case == "missing_field":
        del data[names[-1]]
    elif case == "missing_item":
        del data["item"]
    elif case == "page_out_of_range":
        url = "/item/99"
    elif case == "future_page":
        url = "/item/1"
    before = counts(app)
    if case == "duplicate_field":
        body = "&".join(f"{k}={v}" for k, v in data.items()) + f"&{names[0]}=2"
        r = c.post(url, content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    else:
        r = c.post(url, data=data)
    assert 400 <= r.status_code < 500, (case, r.status_code)
    assert counts(app) == before
    # and the page can still be answered properly afterwards
    assert c.post(action, data={"item": item, **answers(names)}).status_code == 303


def test_double_submit_is_refused_and_first_answer_kept(app):
    c = client(app)
    enter(c)
    action, item, names = form_of(c.get(current_page(c)).text)
    assert c.post(action, data={"item": item, **answers(names, 5)}).status_code == 303
    before = counts(app)
    for value in (5, 2):  # the same answer again, or a changed one
        r = c.post(action, data={"item": item, **answers(names, value)})
        assert r.status_code == 409 and 'href="/page"' in r.text  # a way on, to the next unanswered page
    assert counts(app) == before
    assert {r["value"] for r in collect(app.state.store)["responses"] if r["kind"] == "likert"} == {5}


def test_forged_or_missing_tokens_are_refused(app):
    a = client(app)
    enter(a)
    action, item, names = form_of(a.get(current_page(a)).text)
    before = counts(app)
    token = a.cookies[COOKIE]
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")  # one character off (never the token itself)
    for cookies in ({}, {COOKIE: "forged-" + "x" * 40}, {COOKIE: altered}):
        c = client(app)
        for k, v in cookies.items():
            c.cookies.set(k, v)
        assert c.post(action, data={"item": item, **answers(names)}).status_code == 403
        assert c.get(action).status_code == 403
        assert c.post("/instructions").status_code == 403
    assert counts(app) == before


def test_no_participant_reads_or_changes_another_ones_answers(app):
    a, b = client(app), client(app)
    enter(a)
    enter(b)
    a_page = a.get(current_page(a)).text
    a_action, a_item, a_names = form_of(a_page)
    assert a.post(a_action, data={"item": a_item, **answers(a_names, 5)}).status_code == 303
    before = counts(app)
    # b cannot submit to a's item (a's item is not on b's page), nor see a's pages
    b_page = b.get(current_page(b)).text
    b_action, b_item, b_names = form_of(b_page)
    if b_item != a_item:
        assert b.post(b_action, data={"item": a_item, **answers(a_names, 1)}).status_code == 422
        assert counts(app) == before
    assert b.get("/item/1").headers["location"] == "/item/0"  # b is not where a is
    assert b.post("/item/1", data={"item": a_item, **answers(a_names, 1)}).status_code == 409
    assert counts(app) == before
    # a's stored ratings are untouched; b's appear under b's own id only
    assert b.post(b_action, data={"item": b_item, **answers(b_names, 2)}).status_code == 303
    rows = collect(app.state.store)["responses"]
    ids = {p["public_id"]: p for p in app.state.store.all_participants()}
    by_person = {pid: {r["value"] for r in rows if r["participant"] == pid and r["kind"] == "likert"}
                 for pid in ids}
    assert sorted(by_person.values(), key=min) == [{2}, {5}]
    # no page or export is reachable by a participant's cookie
    assert a.get("/admin/export/responses.csv").status_code == 401


def test_declining_consent_stores_nothing(app):
    c = client(app)
    r = c.post("/consent", data={"consent": "no", "PROLIFIC_PID": "abc"})
    assert r.status_code == 200 and COOKIE not in c.cookies
    assert c.post("/consent", data={}).status_code == 422
    assert counts(app) == (0, 0, [])


def test_bad_prolific_parameters_and_repeated_prolific_id(app):
    assert client(app).get("/start?PROLIFIC_PID=<script>").status_code == 400
    enter(client(app), pid="60aa11")
    before = counts(app)
    r = client(app).post("/consent", data={"consent": "yes", "PROLIFIC_PID": "60aa11"})
    assert r.status_code == 409 and counts(app) == before


def test_admin_needs_the_token(app):
    c = client(app)
    enter(c)
    finish(c)
    anon = client(app)
    assert anon.get("/admin", headers={"accept": "application/json"}).status_code == 401
    assert anon.get("/admin", headers={"accept": "text/html"}).headers["location"] == "/admin/login"
    for name in ("responses.csv", "participants.jsonl", "codebook.csv"):
        assert anon.get(f"/admin/export/{name}").status_code == 401
        assert anon.get(f"/admin/export/{name}", headers={"authorization": "Bearer wrong-token-123"}).status_code == 401
    assert anon.post("/admin/login", data={"token": "nope"}).status_code == 401
    assert anon.post("/admin/login", data={"token": ADMIN_TOKEN}).status_code == 303
    page = anon.get("/admin")
    assert page.status_code == 200 and "completed" in page.text
    csv_text = anon.get("/admin/export/responses.csv").text
    assert csv_text.startswith("participant,condition,item_id") and len(csv_text.splitlines()) == 1 + 9
    bearer = client(app).get("/admin/export/participants.jsonl", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    (row,) = [json.loads(x) for x in bearer.text.splitlines()]
    assert row["excluded"] is True and row["too_fast"] is True and row["failed_attention"] is False
    assert client(app).get("/admin/export/secrets.csv", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 404


def test_exclusion_flags(app):
    done_fast = client(app)
    enter(done_fast)
    finish(done_fast)
    careless = client(app)
    enter(careless)
    while (loc := current_page(careless)) != "/done":
        action, item, names = form_of(careless.get(loc).text)
        careless.post(action, data={"item": item, **{n: "3" for n in names}})  # 3 on the attention check too
    careless.get("/done")
    dropout = client(app)
    enter(dropout)
    flags = {(p["failed_attention"], p["too_fast"], p["incomplete"], p["excluded"])
             for p in collect(app.state.store)["participants"]}
    assert flags == {(False, True, False, True), (True, True, False, True), (False, False, True, True)}
