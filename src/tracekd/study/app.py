"""The study web app: FastAPI, server-rendered Jinja2 pages, no JavaScript needed.

Participant flow: ``/start`` (the link, with Prolific's ``PROLIFIC_PID``, ``STUDY_ID``, ``SESSION_ID``)
-> consent -> instructions -> one page per item (``/item/N``) -> ``/done`` (redirect to the completion
URL). The session is an opaque random token in an HttpOnly, SameSite=Lax cookie; the database keeps only
its sha256. Reloading any page resumes at the first unanswered one. Admin pages (``/admin``) need the
admin token given at start (``Authorization: Bearer TOKEN`` or the login form's cookie).

    from tracekd.study.app import create_app
    app = create_app("runs/study", admin_token="...")      # then: uvicorn.run(app)
"""

from __future__ import annotations

import hmac
import json
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from .build import load_study
from .store import Rejected, StudyStore, default_url

COOKIE = "tracekd_study"
ADMIN_COOKIE = "tracekd_study_admin"
_PROLIFIC = {"PROLIFIC_PID": "prolific_pid", "STUDY_ID": "prolific_study_id", "SESSION_ID": "prolific_session_id"}
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TEMPLATES = Path(__file__).with_name("templates")


def create_app(study_dir: str | Path, *, db_url: str | None = None, admin_token: str,
               secure_cookies: bool = False) -> FastAPI:
    """The app for one study folder; ``db_url`` defaults to ``STUDY_DIR/study.db`` (SQLite)."""
    if not admin_token or len(admin_token) < 12:
        raise ValueError("the admin token must be at least 12 characters")
    cfg, items = load_study(study_dir)
    store = StudyStore(db_url or default_url(study_dir), cfg, items)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    app = FastAPI(title=cfg.title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    labels = cfg.scale_labels
    statements = {it.id: it.text for it in cfg.likert_items} | {a.id: a.text for a in cfg.attention_checks}

    def page(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        ctx.setdefault("title", cfg.title)
        resp = templates.TemplateResponse(request, name, {"cfg": cfg, **ctx}, status_code=status)
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        # no scripts, no external anything: the pages are plain forms with inline CSS
        resp.headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; "
                                                   "frame-ancestors 'none'; base-uri 'none'")
        return resp

    def message(request: Request, status: int, text: str, heading: str = "Sorry",
                link: str | None = None) -> HTMLResponse:
        return page(request, "message.html", status=status, heading=heading, text=text, link=link)

    def go(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    async def current(request: Request):
        return await run_in_threadpool(store.participant, request.cookies.get(COOKIE))

    def next_url(p) -> str:
        if p.instructions_at is None:
            return "/instructions"
        if p.position >= len(json.loads(p.pages)):
            return "/done"
        return f"/item/{p.position}"

    def no_session(request: Request) -> HTMLResponse:
        return message(request, 403, "Your session was not found. Please open the study link you were given "
                                     "again, in the same browser.")

    @app.get("/", include_in_schema=False)
    async def root():
        return go("/start")

    @app.get("/start", response_class=HTMLResponse)
    async def start(request: Request):
        p = await current(request)
        if p is not None:
            return go(next_url(p))
        params = {k: request.query_params.get(k, "") for k in _PROLIFIC}
        bad = [k for k, v in params.items() if v and not _ID_RE.match(v)]
        if bad:
            return message(request, 400, f"The link has an invalid {', '.join(bad)}.")
        return page(request, "consent.html", params=params)

    @app.post("/consent")
    async def consent(request: Request):
        form = await request.form()
        choice = form.get("consent")
        if choice not in ("yes", "no"):
            return message(request, 422, "Please choose whether you agree to take part.")
        if choice == "no":
            return message(request, 200, "You chose not to take part. Nothing about you was stored. If you came "
                                         "from Prolific, please return the study there.", heading="Thank you")
        p = await current(request)
        if p is not None:
            return go(next_url(p))
        prolific = {}
        for k, col in _PROLIFIC.items():
            value = form.get(k) or None
            if value is not None and not _ID_RE.match(value):
                return message(request, 400, f"Invalid {k}.")
            prolific[col] = value
        try:
            token, p = await run_in_threadpool(store.create_participant, prolific)
        except Rejected as e:
            return message(request, e.status, e.message)
        resp = go(next_url(p))
        resp.set_cookie(COOKIE, token, httponly=True, samesite="lax", secure=secure_cookies, path="/",
                        max_age=14 * 24 * 3600)
        return resp

    @app.get("/instructions", response_class=HTMLResponse)
    async def instructions(request: Request):
        p = await current(request)
        if p is None:
            return no_session(request)
        if p.instructions_at is not None:
            return go(next_url(p))
        return page(request, "instructions.html")

    @app.post("/instructions")
    async def instructions_done(request: Request):
        p = await current(request)
        if p is None:
            return no_session(request)
        await run_in_threadpool(store.mark_instructions, p.id)
        return go("/page")

    @app.get("/page")
    async def resume(request: Request):
        p = await current(request)
        if p is None:
            return go("/start")
        return go(next_url(p))

    def item_context(p, position: int, error: str | None = None) -> dict:
        pages = json.loads(p.pages)
        pg = pages[position]
        item = store.items[pg["item"]]
        return dict(item=item, position=position, n_pages=len(pages), labels=labels, error=error,
                    statements=[(s, statements[s]) for s in pg["statements"]])

    @app.get("/item/{position}", response_class=HTMLResponse)
    async def item_page(request: Request, position: int):
        p = await current(request)
        if p is None:
            return no_session(request)
        if position != p.position or p.instructions_at is None:
            return go(next_url(p))
        await run_in_threadpool(store.view_page, p.id, position)
        return page(request, "item.html", **item_context(p, position))

    @app.post("/item/{position}")
    async def item_answer(request: Request, position: int):
        p = await current(request)
        if p is None:
            return no_session(request)
        form = await request.form()
        item_id = form.get("item")
        if not isinstance(item_id, str):
            return message(request, 422, "The form is missing the item.")
        pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        if len(pairs) != len(form.multi_items()):
            return message(request, 422, "Unexpected file upload.")
        try:
            nxt = await run_in_threadpool(store.answer, p.id, position, item_id, pairs)
        except Rejected as e:
            if e.status == 422 and position == p.position and json.loads(p.pages)[position]["item"] == item_id:
                return page(request, "item.html", status=422, **item_context(p, position, error=e.message))
            return message(request, e.status, e.message, link="/page")  # e.g. a double click: carry on
        return go("/done" if nxt >= len(json.loads(p.pages)) else f"/item/{nxt}")

    @app.get("/done")
    async def done(request: Request):
        p = await current(request)
        if p is None:
            return no_session(request)
        if p.instructions_at is None or p.position < len(json.loads(p.pages)):
            return go(next_url(p))
        await run_in_threadpool(store.complete, p.id)
        target = cfg.completion_target()
        if target:
            return go(target)
        return page(request, "done.html", code=cfg.completion_code)

    # ------------------------------------------------------------------------------------------ admin
    def is_admin(request: Request) -> bool:
        given = request.cookies.get(ADMIN_COOKIE, "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return bool(given) and hmac.compare_digest(given.encode(), admin_token.encode())

    @app.get("/admin/login", response_class=HTMLResponse)
    async def admin_login_form(request: Request):
        return page(request, "admin_login.html", error=None)

    @app.post("/admin/login")
    async def admin_login(request: Request):
        form = await request.form()
        token = form.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), admin_token.encode()):
            return page(request, "admin_login.html", status=401, error="Wrong token.")
        resp = go("/admin")
        resp.set_cookie(ADMIN_COOKIE, token, httponly=True, samesite="strict", secure=secure_cookies,
                        path="/admin")
        return resp

    @app.get("/admin", response_class=HTMLResponse)
    async def admin(request: Request):
        if not is_admin(request):
            return go("/admin/login") if "text/html" in request.headers.get("accept", "") else \
                PlainTextResponse("admin token required", status_code=401)
        from .export import collect

        data = await run_in_threadpool(collect, store)
        flags = ("failed_attention", "too_fast", "incomplete", "excluded")
        excl = {f: sum(1 for r in data["participants"] if r[f]) for f in flags}
        return page(request, "admin.html", progress=await run_in_threadpool(store.progress), exclusions=excl,
                    n_responses=len(data["responses"]))

    @app.get("/admin/export/{name}")
    async def admin_export(request: Request, name: str):
        if not is_admin(request):
            return PlainTextResponse("admin token required", status_code=401)
        from .export import TABLES, collect, to_csv, to_jsonl

        stem, _, fmt = name.partition(".")
        if stem not in TABLES or fmt not in ("csv", "jsonl"):
            return PlainTextResponse("unknown export", status_code=404)
        data = await run_in_threadpool(collect, store)
        body = to_csv(data[stem]) if fmt == "csv" else to_jsonl(data[stem])
        return Response(body, media_type="text/csv" if fmt == "csv" else "application/x-ndjson",
                        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

    return app
