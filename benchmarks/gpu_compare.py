"""Compare two `tracekd generate` outputs of the same rows (HF vs vLLM in benchmarks/gpu_check.sh).

    python benchmarks/gpu_compare.py HF.jsonl VLLM.jsonl [--train-manifest DIR/manifest.json] [--peaks PEAKS.txt]

Prints rows on both sides, identical texts, identical answers (the <answer> part, else the whole
text), finish reasons, tokens/s of each side (from its manifest) and, when given, the training run's
tokens/s and the peak GPU memory of each stage (lines ``stage MiB`` sampled by nvidia-smi). Exits 1
when a row is missing on either side, else 0: greedy decoding in bf16 may differ between the two
backends' kernels, so agreement is reported, not required.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


def _rows(path: Path) -> dict[str, dict]:
    return {obj["id"]: obj for obj in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                                       if line.strip())}


def _answer(text: str) -> str:
    """
    >>> _answer("<think>x</think> <answer> office </answer>"), _answer("office")
    ('office', 'office')
    """
    m = _ANSWER.search(text)
    return (m.group(1) if m else text).strip()


def _tok_s(gen_path: Path) -> float | None:
    m = gen_path.with_name(gen_path.stem + ".manifest.json")
    if not m.is_file():
        return None
    return json.loads(m.read_text(encoding="utf-8")).get("timing", {}).get("completion_tokens_per_second")


def compare(a_path: Path, b_path: Path) -> dict:
    """Agreement of two generation files joined by id."""
    a, b = _rows(a_path), _rows(b_path)
    both = sorted(set(a) & set(b))
    return {
        "rows_a": len(a), "rows_b": len(b), "rows_both": len(both),
        "missing": sorted(set(a) ^ set(b)),
        "identical_text": sum(a[i]["text"] == b[i]["text"] for i in both),
        "identical_answer": sum(_answer(a[i]["text"]) == _answer(b[i]["text"]) for i in both),
        "stopped_a": sum(a[i].get("finish_reason") == "stop" for i in both),
        "stopped_b": sum(b[i].get("finish_reason") == "stop" for i in both),
        "tokens_per_second_a": _tok_s(a_path), "tokens_per_second_b": _tok_s(b_path),
        "first_difference": next(({"id": i, "a": a[i]["text"][:200], "b": b[i]["text"][:200]}
                                  for i in both if a[i]["text"] != b[i]["text"]), None),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="generations of the first backend (hf)")
    ap.add_argument("b", type=Path, help="generations of the second backend (vllm)")
    ap.add_argument("--names", default="hf,vllm", help="labels of the two sides")
    ap.add_argument("--train-manifest", type=Path, help="the adapter's manifest.json (training tokens/s)")
    ap.add_argument("--peaks", type=Path, help="lines 'stage peak_MiB' measured by the caller")
    args = ap.parse_args(argv)
    na, nb = args.names.split(",")
    r = compare(args.a, args.b)
    n = max(1, r["rows_both"])
    print(f"rows: {na} {r['rows_a']}, {nb} {r['rows_b']}, on both {r['rows_both']}")
    print(f"identical text:   {r['identical_text']}/{r['rows_both']} ({r['identical_text'] / n:.0%})")
    print(f"identical answer: {r['identical_answer']}/{r['rows_both']} ({r['identical_answer'] / n:.0%})")
    print(f"stopped at end-of-turn: {na} {r['stopped_a']}, {nb} {r['stopped_b']}")
    for name, key in ((na, "tokens_per_second_a"), (nb, "tokens_per_second_b")):
        print(f"{name} generation: {r[key] if r[key] is not None else 'n/a'} tokens/s")
    if args.train_manifest and args.train_manifest.is_file():
        m = json.loads(args.train_manifest.read_text(encoding="utf-8"))
        t = m.get("timing", {})
        print(f"training: {m.get('global_step')} steps, {t.get('tokens_per_second')} tokens/s, "
              f"{t.get('train_seconds')} s, precision {m.get('resolved', {}).get('precision')}")
    if args.peaks and args.peaks.is_file():
        for line in args.peaks.read_text(encoding="utf-8").splitlines():
            if line.strip():
                stage, mib = line.split()[:2]
                print(f"peak GPU memory, {stage}: {mib} MiB")
    if r["first_difference"]:
        d = r["first_difference"]
        print(f"first difference ({d['id']}):\n  {na}: {d['a']!r}\n  {nb}: {d['b']!r}")
    if r["missing"]:
        print(f"MISSING rows on one side: {r['missing'][:5]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
