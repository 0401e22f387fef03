"""Benchmark: `tracekd generate` (batched, length-sorted, left-padded) vs a per-example `model.generate` loop.

Same student, same prompts (bAbI correct-arm test rows through the chat template), greedy decoding,
same max_new_tokens, measured in one run. The ratio is wall time of the loop / wall time of
`tracekd generate` (its model loading included, so the ratio errs low; the median of --repeats runs,
default 3); the ratio without tracekd's model loading, timed as the loop is, is printed beside it. Also prints how many
outputs are identical (greedy decoding with left padding should not change them).

    python benchmarks/bench_generate.py                       # smollm2-135m, 48 prompts, one batch of 48
    python benchmarks/bench_generate.py --adapter runs/babi-correct-smollm2   # a trained student: trace-length outputs
    python benchmarks/bench_generate.py --student tiny-random --n 16   # seconds, for a smoke check

Levers (each switched off in its own extra run, ``--levers none`` to skip): ``shared-prefix`` (the tokens
every prompt of a batch begins with - chat template's system turn, instruction line - prefilled once per
batch and their key/value cache reused for each row), ``drop-finished`` (greedy decoding in tracekd's loop,
where a row that has ended leaves the batch, against ``model.generate``, which decodes it as padding until
the batch's longest row ends) and ``batch`` (batches of 16, tracekd's default before its greedy loop, instead
of ``--batch-size``: each batch decodes alone, waiting for its longest row). Each prints its time, ratio to
the loop and identical outputs.

With --calibrate it first decides generation's CPU precision the way `tracekd generate` then uses it:
the prompts are generated greedily in float32 and in bf16, and bf16 is kept only when it is faster and
every output is identical (cached per machine and student; `precision: auto` reads it).

Without an adapter the untrained student answers in a few words, so prompt processing dominates
and batching gains less; the trained student writes ~65-token traces, the workload of the method.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the ``batch`` lever's batch size (tracekd generate's default before its greedy loop)
SMALL_BATCH = 16
DEFAULT_DATA = Path(os.environ.get("TRACEKD_SHARED", ROOT.parent / "shared")) / "data" / "babi" / "en-first-question"


def babi_rows(split: str, n: int, workdir: Path, data: Path = DEFAULT_DATA) -> Path:
    """The first ``n`` rows (stratified over the 11 tasks by `tracekd build`) of the correct arm."""
    sets = workdir / "sets"
    size_flag = "--max-test" if split == "test" else "--max-train"
    subprocess.run([sys.executable, "-m", "tracekd.cli", "build", "--dataset", "babi", "--data", str(data),
                    "--arms", "correct", size_flag, str(n), "--out", str(sets), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    lines = (sets / "correct" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    path = workdir / f"{split}-{n}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def loop_baseline(student_name: str, adapter: str | None, rows: list[dict],
                  max_new_tokens: int) -> tuple[float, list[str], int]:
    """One `model.generate` call per prompt (batch 1), greedy; returns seconds, texts, new tokens."""
    import torch

    from tracekd import students
    from tracekd.runtime import prompt_ids

    s = students.resolve(student_name)
    tok = students.load_tokenizer(s)
    model = students.load_model(s)
    if adapter:  # the same merged weights tracekd generates with
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model = model.eval()
    texts, new_tokens = [], 0
    t0 = time.perf_counter()
    for r in rows:
        ids = torch.tensor([prompt_ids(tok, r["prompt"])])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        gen = out[0, ids.shape[1]:].tolist()
        new_tokens += len(gen)
        texts.append(tok.decode(gen, skip_special_tokens=True))
    return time.perf_counter() - t0, texts, new_tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=48, help="prompts (bAbI test rows)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: tracekd generate's (48)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--adapter", help="LoRA adapter from `tracekd train` (both sides use it, merged)")
    ap.add_argument("--rows", help="SFT rows JSONL to use instead of building bAbI rows")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    ap.add_argument("--levers", default="shared-prefix,drop-finished",
                    help="comma list of levers to measure switched off, one extra run each: shared-prefix, "
                         "drop-finished, batch (batches of 16 instead of --batch-size), or none")
    ap.add_argument("--repeats", type=int, default=3,
                    help="times each tracekd variant runs; its figure is the median (a run of ~8 s moves by up to "
                         "+-20%% with this machine's drift, while the loop's ~25 s averages over it)")
    ap.add_argument("--calibrate", action="store_true",
                    help="measure fp32 vs bf16 generation on these prompts and cache the decision for precision auto")
    a = ap.parse_args()
    load_start = round(os.getloadavg()[0], 2)

    from tracekd.calibration import bf16_flags, cpu_identity
    from tracekd.generate import GenerateConfig, generate
    from tracekd.generate.config import GenerateRuntime

    if a.batch_size is None:
        a.batch_size = GenerateRuntime.batch_size

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows_path = Path(a.rows) if a.rows else babi_rows("test", a.n, tmp)
        rows = [json.loads(x) for x in rows_path.read_text(encoding="utf-8").splitlines() if x.strip()][: a.n]
        rows_path = tmp / "rows.jsonl"
        rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

        # library imports and the student cache outside both timings
        import datasets  # noqa: F401
        import peft  # noqa: F401
        import transformers  # noqa: F401

        import tracekd.generate.hf  # noqa: F401
        import tracekd.generate.run  # noqa: F401
        from tracekd import students

        students.load_tokenizer(students.resolve(a.student))

        calibration = None
        if a.calibrate:
            from tracekd.calibration import calibrate_generation

            def run(prec: str) -> tuple[list[str], int, float]:
                t = time.perf_counter()
                path = generate(GenerateConfig(input_file=str(rows_path), output_file=str(tmp / f"cal-{prec}.jsonl"),
                                               student=a.student, adapter=a.adapter, batch_size=a.batch_size,
                                               max_new_tokens=a.max_new_tokens, precision=prec, progress=False),
                                log=lambda *_: None)
                got = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
                return [g["text"] for g in got], sum(g["completion_tokens"] for g in got), time.perf_counter() - t

            calibration = calibrate_generation(run, a.student).to_dict()
            print(f"generation precision: {calibration['precision']} ({calibration['reason']})", file=sys.stderr)

        def run_tracekd(tag: str, **overrides) -> dict:
            """`tracekd generate` timed --repeats times (model loading included): the median seconds, every run's,
            texts (the same in every run, or an error), tokens, precision used."""
            settings = {"batch_size": a.batch_size, **overrides}
            times, generating, texts = [], [], None
            for k in range(a.repeats):
                t0 = time.perf_counter()
                out = generate(GenerateConfig(input_file=str(rows_path), output_file=str(tmp / f"gen-{tag}-{k}.jsonl"),
                                              student=a.student, adapter=a.adapter, max_new_tokens=a.max_new_tokens,
                                              progress=False, **settings), log=lambda *_: None)
                times.append(time.perf_counter() - t0)
                gens = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
                if texts is not None and [g["text"] for g in gens] != texts:
                    raise SystemExit(f"greedy outputs differ between repeats of {tag!r}")
                texts = [g["text"] for g in gens]
                m = json.loads(out.with_name(out.stem + ".manifest.json").read_text(encoding="utf-8"))
                generating.append(m["timing"]["seconds_now"])  # without loading the model, as the loop is timed
            return {"seconds": statistics.median(times), "runs_seconds": [round(t, 2) for t in times],
                    "generating_seconds": statistics.median(generating),
                    "texts": texts, "tokens": sum(g["completion_tokens"] for g in gens),
                    "precision": m["settings"]["precision"], "settings": settings}

        off = {"shared-prefix": {"shared_prefix": False}, "drop-finished": {"drop_finished": False},
               "batch": {"batch_size": SMALL_BATCH}}
        levers = [x.strip() for x in a.levers.split(",") if x.strip() and x.strip() != "none"]
        unknown = [x for x in levers if x not in off]
        if unknown:
            ap.error(f"unknown lever(s) {unknown}; choose from {sorted(off)} or none")
        # untimed warm-up: first-call costs inside generate (lazy imports, kernels) go to no variant
        generate(GenerateConfig(input_file=str(rows_path), output_file=str(tmp / "warmup.jsonl"), student=a.student,
                                adapter=a.adapter, max_new_tokens=2, max_examples=2, progress=False),
                 log=lambda *_: None)
        main_run = run_tracekd("all")
        variants = {lever: run_tracekd(lever, **off[lever]) for lever in levers}

        t_loop, loop_texts, loop_tokens = loop_baseline(a.student, a.adapter, rows, a.max_new_tokens)

    def same(texts: list[str]) -> str:
        return f"{sum(1 for x, y in zip(texts, loop_texts, strict=True) if x == y)}/{len(rows)}"

    t_batched = main_run["seconds"]
    result = {
        "cpu": cpu_identity()["cpu_model"], "cpus": os.cpu_count(), "bf16_flags": bf16_flags(),
        "load_avg_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "student": a.student, "adapter": a.adapter, "prompts": len(rows), "batch_size": a.batch_size,
        "max_new_tokens": a.max_new_tokens, "precision": main_run["precision"],
        "tracekd_generate_seconds": round(t_batched, 2), "tracekd_runs_seconds": main_run["runs_seconds"],
        "loop_seconds": round(t_loop, 2),
        "tracekd_generate_tok_per_s": round(main_run["tokens"] / t_batched, 2),
        "loop_tok_per_s": round(loop_tokens / t_loop, 2),
        "identical_outputs": same(main_run["texts"]),
        "speedup": round(t_loop / t_batched, 2),
        "tracekd_generating_seconds": round(main_run["generating_seconds"], 2),
        "speedup_without_loading": round(t_loop / main_run["generating_seconds"], 2),
        "levers": {lever: {"switched": ("off" if lever != "batch"
                                        else f"batches of {SMALL_BATCH} instead of {a.batch_size}"),
                           "settings": v["settings"], "seconds": round(v["seconds"], 2),
                           "runs_seconds": v["runs_seconds"],
                           "speedup_vs_loop": round(t_loop / v["seconds"], 2),
                           "time_vs_default": round(v["seconds"] / t_batched, 2),
                           "identical_outputs": same(v["texts"])} for lever, v in variants.items()},
        "precision_calibration": calibration,
    }
    print(json.dumps(result, indent=2))
    print(f"tracekd generate is {result['speedup']:.2f}x faster than a per-example model.generate loop "
          f"({a.student}, {len(rows)} prompts, batch {a.batch_size}, {result['precision']}; "
          f"target >= 5x with an adapter, >= 3x without; outputs identical {result['identical_outputs']})")
    print(f"  tracekd generate {t_batched:.2f} s (median of {', '.join(f'{x:.2f}' for x in main_run['runs_seconds'])}"
          f" s) vs the loop {t_loop:.2f} s; without loading the model (the loop's timing leaves it out) "
          f"{main_run['generating_seconds']:.2f} s: {result['speedup_without_loading']:.2f}x")
    print(f"CPU: {result['cpu']} ({result['cpus']} CPUs; bf16 flags: {' '.join(result['bf16_flags']) or '-'}); "
          f"1-minute load average {load_start} at the start, {result['load_avg_1min']['end']} at the end")
    for lever, v in result["levers"].items():
        what = {"shared-prefix": "without shared-prefix prefill",
                "drop-finished": "model.generate (finished rows stay in the batch)"}.get(lever, v["switched"])
        print(f"  {what}: {v['seconds']:.1f} s (median of {', '.join(f'{x:.2f}' for x in v['runs_seconds'])}), "
              f"{v['speedup_vs_loop']:.2f}x vs the loop "
              f"({v['time_vs_default']:.2f}x the default's time), outputs identical {v['identical_outputs']}")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
