"""Peak memory of a multi-training `tracekd run`: every stage in one process vs each in its own.

  python benchmarks/bench_run_memory.py                      # the demo config, 10 steps per arm
  python benchmarks/bench_run_memory.py --max-steps 4 --max-test 6 --max-new-tokens 48 --precision fp32   # quick
  python benchmarks/bench_run_memory.py --config configs/experiments/babi/smollm2-135m_cpu.yaml --max-steps 0
  python benchmarks/bench_run_memory.py --config configs/experiments/babi/smollm2-135m_cpu.yaml --max-steps 0 \
      --executors subprocess --out runs/bench-run-memory     # the default executor only, run folder kept

Runs the same config twice into fresh folders, ``--executor local`` (in-process) and ``--executor
subprocess``, sampling the resident memory of the whole process tree (psutil, every 0.1 s). Prints
each run's peak tree RSS, the largest single process, the wall time, and the ratio subprocess / local;
the two runs' analyses must be identical (checked, so the comparison is of the same work). For every run it
also prints the peak each training recorded in its own manifest (``memory.peak_rss_gb``), so the run's
peak can be read against one training's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: tracekd's manifests write memory in GiB (``tracekd.train.memory.GB``); so does this benchmark
GIB = 1024 ** 3


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(sum, max) resident bytes over the process and its descendants."""
    total, biggest = 0, 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            rss = p.memory_info().rss
        except psutil.Error:
            continue
        total += rss
        biggest = max(biggest, rss)
    return total, biggest


def measure(cmd: list[str]) -> dict:
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = {"tree": 0, "one": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                t, b = tree_rss(ps)
            except psutil.Error:
                break
            peak["tree"], peak["one"] = max(peak["tree"], t), max(peak["one"], b)
            time.sleep(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    done.set()
    th.join()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    return {"wall_s": time.monotonic() - t0, "peak_tree_gb": peak["tree"] / GIB, "peak_one_gb": peak["one"] / GIB}


def numbers(run_dir: Path) -> dict:
    a = json.loads((run_dir / "analysis.json").read_text())
    for c in a["cells"]:
        c.pop("score_dir", None)
    return {k: a[k] for k in ("cells", "groups", "comparisons")}


def training_peaks(run_dir: Path) -> list[tuple[str, float]]:
    """(stage folder, peak RSS in GB) that each finished train stage recorded in its manifest, in plan order."""
    plan = json.loads((run_dir / "plan.json").read_text()) if (run_dir / "plan.json").exists() else None
    dirs = sorted((run_dir / "stages").glob("train-*"))
    if plan is not None:
        order = [f"{s['kind']}-{s['key']}" for s in plan.get("stages", []) if isinstance(s, dict) and "key" in s]
        dirs.sort(key=lambda d: order.index(d.name) if d.name in order else len(order))
    peaks = []
    for d in dirs:
        m = d / "adapter" / "manifest.json"  # the train stage's adapter folder holds its manifest
        if m.exists():
            peaks.append((d.name, float(json.loads(m.read_text())["memory"]["peak_rss_gb"])))
    return peaks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "src/tracekd/configs/demo.yaml"))
    ap.add_argument("--max-steps", type=int, default=10, help="optimizer steps per training (0 = the config's)")
    ap.add_argument("--max-test", type=int, default=None, help="test items per dataset (default: the config's)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="generation length (default: the config's)")
    ap.add_argument("--precision", default=None, help="train precision (default: the config's, i.e. auto)")
    ap.add_argument("--executors", default="local,subprocess",
                    help="comma-separated executors to run, in order (default: local,subprocess)")
    ap.add_argument("--out", default=None, help="keep the run folders under this folder (default: a temp folder)")
    args = ap.parse_args()
    executors = [e.strip() for e in args.executors.split(",") if e.strip()]
    cfg = yaml.safe_load(Path(args.config).read_text())
    if args.max_steps:
        cfg["train"] = {**cfg.get("train", {}), "max_steps": args.max_steps}
    if args.max_test:
        for d in cfg["datasets"]:
            d["max_test"] = args.max_test
    if args.max_new_tokens:
        cfg["generate"] = {**cfg.get("generate", {}), "max_new_tokens": args.max_new_tokens}
    if args.precision:
        cfg["train"] = {**cfg.get("train", {}), "precision": args.precision}
    results = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = args.out or tmp_dir
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for executor in executors:
            cfg["out"] = str(Path(tmp) / executor)
            path = Path(tmp) / f"{executor}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            results[executor] = measure([sys.executable, "-m", "tracekd.cli", "run", str(path),
                                         "--executor", executor])
            r = results[executor]
            print(f"{executor:<10} wall {r['wall_s']:6.0f} s  peak RSS of the process tree {r['peak_tree_gb']:.2f} GiB"
                  f"  largest one process {r['peak_one_gb']:.2f} GiB", flush=True)
            peaks = training_peaks(Path(tmp) / executor)
            for name, gb in peaks:
                print(f"    {name}: peak RSS {gb:.2f} GiB (its own manifest)")
            if peaks:
                largest = max(gb for _, gb in peaks)
                print(f"    process tree / the largest training's own peak ({largest:.2f} GiB): "
                      f"{r['peak_tree_gb'] / largest:.2f}x; largest one process / it: "
                      f"{r['peak_one_gb'] / largest:.2f}x", flush=True)
        if executors != ["local", "subprocess"]:
            return
        same = numbers(Path(tmp) / "local") == numbers(Path(tmp) / "subprocess")
    trainings = len(cfg.get("students", ["smollm2-135m"])) * len(cfg.get("arms", [])) * len(cfg.get("seeds", [0]))
    print(f"config {args.config} ({trainings} trainings, max_steps {args.max_steps or 'as configured'})")
    print(f"subprocess / local peak tree RSS: {results['subprocess']['peak_tree_gb'] / results['local']['peak_tree_gb']:.2f}x"
          f"; wall {results['subprocess']['wall_s'] / results['local']['wall_s']:.2f}x; analyses identical: {same}")


if __name__ == "__main__":
    main()
