"""The human interpretability study: build it from built arms, serve it, export and analyse the ratings.

  tracekd study build runs/babi-sft --out runs/study                     # the default study config
  tracekd study build runs/demo --conditions decomposed=correct,incorrect=incorrect --out runs/demo-study
  tracekd study build runs/babi-sft --config my-study.yaml --out runs/study \\
      --conditions decomposed=correct,incorrect=incorrect                  # any arms as conditions
  tracekd study serve runs/study --port 8000 --admin-token "$TOKEN"       # SQLite in runs/study/study.db
  tracekd study export runs/study --out runs/study/export                 # CSV + JSONL + codebook
  tracekd study analyze runs/study --out runs/study/analysis              # tables + plots
  tracekd study power --effect-size 0.8 --comparisons 6                   # participants per group

``build`` samples items per condition (balanced over the dataset's classes, the same questions across
conditions where they exist, seeded) into STUDY_DIR/study.json with a manifest. ``serve`` runs the web
app (FastAPI on uvicorn): participants open http://HOST:PORT/start (Prolific: append
?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}); admins open /admin
with the admin token. The web and statistics parts need the ``study`` extra.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from ..errors import ConfigError
from ..io import read_json
from ..study.analyze import analyze, markdown_tables, write_analysis
from ..study.build import build_study, load_study
from ..study.config import load_study_config
from ..study.power import achieved_power, anova_per_group, per_group
from ..study.report import write_link

HELP = "human rating study of trace types: build, serve, export, analyze, power"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study_command", metavar="STEP", required=True)

    b = sub.add_parser("build", help="sample a study from a build folder into STUDY_DIR")
    b.add_argument("build_dir", metavar="BUILD_DIR",
                   help="a `tracekd build` folder (examples/ + arm folders), or a run folder with one build stage")
    b.add_argument("--out", required=True, metavar="STUDY_DIR", help="study folder to write")
    b.add_argument("--config", metavar="YAML", help="study config (default: tracekd/study/default.yaml)")
    b.add_argument("--overwrite", action="store_true",
                   help="replace a study already in STUDY_DIR (never one with collected responses)")
    b.add_argument("--conditions", metavar="NAME=ARM[@BUILD_DIR],...",
                   help="conditions to compare, each an arm folder, in BUILD_DIR or the given build folder "
                        "(overrides the config's conditions)")
    for name, kind, text in (("seed", int, "sampling seed"), ("items-per-condition", int, "items per condition"),
                             ("items-per-participant", int, "item pages per participant"),
                             ("split", str, "split to sample from"), ("design", str, "between or within")):
        b.add_argument(f"--{name}", type=kind, help=f"{text} (overrides the config)")
    b.set_defaults(_step=_build)

    s = sub.add_parser("serve", help="run the study web app")
    s.add_argument("study_dir", metavar="STUDY_DIR")
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    s.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (default: sqlite in STUDY_DIR/study.db)")
    s.add_argument("--admin-token", metavar="TOKEN",
                   help="token for /admin (default: $TRACEKD_STUDY_ADMIN_TOKEN, else a random one printed once)")
    s.add_argument("--secure-cookies", action="store_true",
                   help="mark cookies Secure (set this when the study is served over HTTPS)")
    s.add_argument("--access-log", action="store_true",
                   help="log every request line (off by default: study links carry Prolific ids)")
    s.set_defaults(_step=_serve)

    e = sub.add_parser("export", help="write responses, participants (exclusion flags) and codebook")
    e.add_argument("study_dir", metavar="STUDY_DIR")
    e.add_argument("--out", metavar="DIR", help="output folder (default: STUDY_DIR/export)")
    e.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (default: STUDY_DIR/study.db)")
    e.add_argument("--format", default="csv,jsonl", help="csv, jsonl or both (default: %(default)s)")
    e.add_argument("--drop-prolific-ids", action="store_true", help="leave Prolific ids out of the export")
    e.set_defaults(_step=_export)

    a = sub.add_parser("analyze", help="statistics, tables and plots of the ratings")
    a.add_argument("source", metavar="STUDY_DIR|EXPORT_DIR",
                   help="a study folder (read from its database) or a `study export` folder")
    a.add_argument("--out", metavar="DIR", help="output folder (default: SOURCE/analysis)")
    a.add_argument("--db", metavar="URL", help="database URL when SOURCE is a study folder")
    a.add_argument("--config", metavar="YAML|STUDY_DIR",
                   help="study config when SOURCE is an export folder not beside its study (default: the "
                        "config recorded in the export's manifest)")
    a.add_argument("--keep-excluded", action="store_true", help="analyse excluded participants too")
    a.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    a.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    a.add_argument("--no-plots", action="store_true", help="tables only")
    a.add_argument("--link", metavar="RUN_DIR",
                   help="link the analysis to an experiment run: `tracekd report RUN_DIR` then adds a "
                        "'Human ratings' section")
    a.set_defaults(_step=_analyze)

    p = sub.add_parser("power", help="participants per group for an effect size")
    p.add_argument("--effect-size", type=float, required=True,
                   help="Cohen's d for two-group tests, Cohen's f with --test anova")
    p.add_argument("--test", choices=("mwu", "t", "anova"), default="mwu",
                   help="Mann-Whitney U (default), t-test, or one-way ANOVA over --groups")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--power", type=float, default=0.8)
    p.add_argument("--groups", type=int, default=4, help="groups for --test anova (default: %(default)s)")
    p.add_argument("--comparisons", type=int, default=1,
                   help="pairwise tests sharing alpha (4 groups: 6) (default: %(default)s)")
    p.set_defaults(_step=_power)


def run(args: argparse.Namespace) -> int:
    try:
        return args._step(args)
    except ModuleNotFoundError as e:
        from ..errors import ConfigError

        if e.name and e.name.split(".")[0] in ("fastapi", "uvicorn", "jinja2", "sqlalchemy", "multipart",
                                                "pingouin", "krippendorff", "statsmodels", "pandas",
                                                "matplotlib", "starlette"):
            raise ConfigError(f"`tracekd study` needs the study extra ({e.name} is missing): "
                              f"pip install 'tracekd[study]'") from None
        raise


def _build(args) -> int:
    over = {k: getattr(args, k) for k in ("seed", "items_per_condition", "items_per_participant", "split", "design")
            if getattr(args, k) is not None}
    if args.conditions:
        conds = []
        for part in args.conditions.split(","):
            name, _, arm = part.strip().partition("=")
            arm, _, source = arm.partition("@")
            if not name:
                raise ConfigError(f"--conditions: empty name in {args.conditions!r}")
            conds.append({"name": name, "arm": arm or name, "source": source})
        over["conditions"] = conds
    cfg = load_study_config(args.config, over)
    m = build_study(cfg, args.build_dir, args.out, overwrite=args.overwrite)
    n = cfg.items_per_condition
    print(f"{len(cfg.conditions)} conditions x {n} items; {m['shared_questions']} questions shared by all")
    for cond, per in m["items_per_class"].items():
        print(f"  {cond}: " + ", ".join(f"{c or '(no class)'} {k}" for c, k in sorted(per.items())))
    print(f"wrote {args.out}/study.json and manifest.json")
    return 0


def _serve(args) -> int:
    import uvicorn

    from ..study.app import create_app

    token = args.admin_token or os.environ.get("TRACEKD_STUDY_ADMIN_TOKEN")
    generated = token is None
    if generated:
        token = secrets.token_urlsafe(24)
    if len(token) < 12:
        raise ConfigError("the admin token must be at least 12 characters")
    app = create_app(args.study_dir, db_url=args.db, admin_token=token, secure_cookies=args.secure_cookies)
    if generated:
        print(f"admin token (shown once): {token}")
    print(f"participants: http://{args.host}:{args.port}/start   admin: http://{args.host}:{args.port}/admin")
    cfg = app.state.store.cfg
    print(f"storing to {app.state.store.url.split('@')[-1]}")
    if "{code}" in cfg.completion_url and not cfg.completion_code:
        print("warning: completion_url has {code} but the study config sets no completion_code", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", proxy_headers=True,
                access_log=args.access_log)
    return 0


def _store(study_dir, db):
    from ..study.store import StudyStore, default_url

    cfg, items = load_study(study_dir)
    return StudyStore(db or default_url(study_dir), cfg, items)


def _export(args) -> int:
    from ..study.export import write_export

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats or set(formats) - {"csv", "jsonl"}:
        raise ConfigError(f"--format must be csv, jsonl or both, got {args.format!r}")
    if args.db is None and not (Path(args.study_dir) / "study.db").is_file():
        raise ConfigError(f"no database {Path(args.study_dir) / 'study.db'} (has the study been served?); "
                          f"or pass --db URL")
    store = _store(args.study_dir, args.db)
    out = Path(args.out or Path(args.study_dir) / "export")
    m = write_export(store, out, formats=formats, drop_prolific_ids=args.drop_prolific_ids)
    c = m["counts"]
    print(f"{c['participants']} participants ({c['excluded']} flagged for exclusion: attention "
          f"{c['failed_attention']}, too fast {c['too_fast']}, incomplete {c['incomplete']}), "
          f"{c['responses']} ratings")
    print(f"wrote {out}: " + ", ".join(sorted(m["files"])))
    return 0


def _analyze(args) -> int:
    from ..study.export import read_export

    src = Path(args.source)
    if (src / "study.json").is_file():
        from ..study.export import collect

        if args.db is None and not (src / "study.db").is_file():
            raise ConfigError(f"no database {src / 'study.db'} (has the study been served?); or pass --db URL")
        store = _store(src, args.db)
        data = collect(store)
        cfg, inputs = store.cfg, {"database": str(src / "study.db") if args.db is None else "(--db)"}
    elif (src / "responses.jsonl").is_file() and (src / "participants.jsonl").is_file():
        if args.config:
            c = Path(args.config)
            cfg = load_study_config(read_json(c / "study.json")["config"] if c.is_dir() else c)
        elif (src / "manifest.json").is_file():
            cfg = load_study_config(read_json(src / "manifest.json")["config"])
        else:
            raise ConfigError(f"{src} has no manifest.json: pass --config")
        data = read_export(src, cfg)
        inputs = {"export": str(src)}
    else:
        raise ConfigError(f"{src} is neither a study folder (study.json) nor an export folder "
                          f"(responses.jsonl + participants.jsonl)")
    a = analyze(data["responses"], data["participants"], cfg, apply_exclusions=not args.keep_excluded,
                n_boot=args.bootstrap, seed=args.seed)
    out = Path(args.out or src / "analysis")
    written = write_analysis(a, out, plots=not args.no_plots, inputs=inputs)
    print(markdown_tables(a))
    print(f"wrote {', '.join(str(p) for p in written)}")
    if args.link:
        print(f"wrote {write_link(args.link, out / 'analysis.json')} (`tracekd report {args.link}` shows the ratings)")
    return 0


def _power(args) -> int:
    try:
        if args.test == "anova":
            r = anova_per_group(args.effect_size, args.groups, alpha=args.alpha, power=args.power)
            print(f"one-way ANOVA over {args.groups} groups, Cohen's f = {args.effect_size}, alpha {args.alpha}, "
                  f"power {args.power}: {r['n_per_group']} participants per group "
                  f"({r['n_per_group'] * args.groups} in all)")
            return 0
        r = per_group(args.effect_size, alpha=args.alpha, power=args.power, test=args.test,
                      comparisons=args.comparisons)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    name = "Mann-Whitney U (t-test n / ARE 0.864, any distribution)" if args.test == "mwu" else "two-sample t-test"
    print(f"{name}, Cohen's d = {args.effect_size}, alpha {args.alpha}"
          + (f" / {args.comparisons} comparisons" if args.comparisons > 1 else "")
          + f", power {args.power}: {r['n_per_group']} participants per group")
    for n in sorted({max(2, r['n_per_group'] // 2), r['n_per_group'], r['n_per_group'] * 2}):
        print(f"  n = {n:4d} per group -> power {achieved_power(args.effect_size, n, alpha=args.alpha, test=args.test, comparisons=args.comparisons):.2f}")
    return 0
