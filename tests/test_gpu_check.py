"""benchmarks/gpu_check.sh: on a machine without a GPU it says so and runs nothing; its comparison step works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
COMPARE = ROOT / "benchmarks" / "gpu_compare.py"


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_without_a_gpu_it_says_it_needs_one_and_runs_nothing(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    work = tmp_path / "work"
    r = subprocess.run(["bash", str(SCRIPT), str(work)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "gpu_check: needs a CUDA GPU, and torch sees none on this machine; nothing was run." in r.stderr
    assert not work.exists()


def _gens(path: Path, texts: dict[str, str], tok_s: float) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t, "finish_reason": "stop", "prompt_tokens": 5,
                                        "completion_tokens": 3}) + "\n" for i, t in texts.items()))
    path.with_name(path.stem + ".manifest.json").write_text(
        json.dumps({"timing": {"completion_tokens_per_second": tok_s}}))
    return path


def test_compare_counts_agreement_and_prints_speed_and_memory(tmp_path):
    a = _gens(tmp_path / "hf.jsonl", {"1": "<think>t</think> <answer>office</answer>", "2": "<answer>2</answer>",
                                      "3": "garden"}, 120.5)
    b = _gens(tmp_path / "vllm.jsonl", {"1": "<think>t</think> <answer>office</answer>",
                                        "2": "<think>u</think> <answer>2</answer>", "3": "kitchen"}, 900.0)
    peaks = tmp_path / "peaks.txt"
    peaks.write_text("train 2100\ngenerate-hf 1500\ngenerate-vllm 70000\n")
    r = subprocess.run([sys.executable, str(COMPARE), str(a), str(b), "--peaks", str(peaks)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "identical text:   1/3 (33%)" in out and "identical answer: 2/3 (67%)" in out
    assert "hf generation: 120.5 tokens/s" in out and "vllm generation: 900.0 tokens/s" in out
    assert "peak GPU memory, generate-vllm: 70000 MiB" in out
    assert "first difference (2)" in out

    c = _gens(tmp_path / "short.jsonl", {"1": "x"}, 1.0)
    r = subprocess.run([sys.executable, str(COMPARE), str(a), str(c)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "MISSING rows" in r.stderr
