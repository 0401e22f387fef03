"""CPU precision by measurement: time the actual student in float32 and under bf16 autocast, keep the faster.

Whether bf16 pays off on a CPU depends on the chip (AMX tiles, AVX512-BF16 or neither), the PyTorch
build and the model's shapes; machines of this project's kind differ (bf16 was 4.5x faster for a
matmul on one, 10x slower for a training step on another). So ``precision: auto`` on CPU measures:
a few forward+backward passes of the already-loaded student (with its LoRA adapter and training's own
loss) on a micro-batch shaped like training's (:func:`probe_batch`: the memory plan's rows per micro-batch
of the data's median length, rounded up to a power of two of at most :data:`PROBE_MAX_TOKENS` tokens), in
pairs (fp32 then bf16, then bf16 then fp32, ...), and picks bf16 only when it is clearly and consistently faster (:func:`decide_from_timings`: the
median of the per-pair speed-ups at least :data:`BF16_MARGIN`, and no pair where float32 won; a tie
keeps float32, the exact reference). The shape matters: on this project's AMX machine bf16 autocast was
1.03x float32 on 96-token rows and 1.29x on CoTemp's ~450-token rows (full student). The result is cached
per (CPU model, CPU flags, torch version, threads, student, probe shape) in ``$TRACEKD_CACHE/calibration/``;
another machine or torch build measures again.

``measured(student, device)`` reads that cache without importing torch (dry-run estimates use it);
``calibrate_training`` / ``calibrate_generation`` run the measurement and write the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from . import runtime, students
from .experiment.machine_load import MAX_OTHERS_SHARE, LoadMeter
from .io import read_json, write_json
from .timing import time_pairs

#: bf16 must be at least this much faster than float32 to be chosen (float32 is the exact reference)
BF16_MARGIN = 1.10

#: bump when what is measured changes (old cache entries are then ignored)
CALIBRATION_VERSION = 1
#: version of the training probe (paired timings, training's loss); part of the train cache key only, so a
#: change here leaves generation's cached calibrations valid
TRAIN_PROBE_VERSION = 9  # 9: adapter inputs not widened; 8: chunked head + cross-entropy; 7: sdpa vs eager_autocast; 6: padded rows, attention per format; 5: bf16 frozen weights
#: tokens per probe pass: a power of two between these (training's micro-batch, rounded up)
PROBE_MIN_TOKENS, PROBE_MAX_TOKENS = 64, 512
#: decoder layers x tokens of one probe pass (a proportional slice of the student, see :func:`calibrate_training`);
#: 1152 keeps a calibration near 1.2 s on this project's 2-core machine at every probe size
PROBE_LAYER_TOKENS = 1152
#: at most this many decoder layers in the probe
TRAIN_PROBE_LAYERS = 8
#: the decoding probe: rows, tokens in the key/value cache before the timed steps (the first, untimed step's), and
#: the deeper of its two slices (a step through one layer is mostly the LM head; eight give a layer's share a
#: difference well above the noise)
DECODE_ROWS, DECODE_PROMPT, DECODE_LAYERS = 8, 1, 8
#: timed (fp32, bf16) pairs of the training probe, after one warm-up pass each, and the wall-time budget
#: after which no further pair starts (at least 2 pairs always run)
TRAIN_PAIRS, TRAIN_BUDGET_S = 3, 0.6
#: rounds added when the first ones disagree (:func:`undecided`), as many as fit before CALIBRATION_CAP_S
EXTRA_PAIRS = 2
#: a training calibration starts no extra round that would end after this many seconds from its start
CALIBRATION_CAP_S = 1.6

KINDS = ("train", "generate")


@dataclass(frozen=True)
class Calibration:
    """One measurement of a student on one machine: throughput per number format and the choice made."""

    student: str = field(metadata={"help": "student name as given to tracekd"})
    device: str = field(metadata={"help": "cpu (only CPUs are calibrated; CUDA picks bf16/fp16 by support)"})
    kind: str = field(metadata={"help": "train (forward+backward) or generate (greedy decoding)"})
    precision: str = field(metadata={"help": "the number format chosen: fp32 or bf16"})
    fp32_tokens_per_s: float = field(metadata={
        "help": "measured tokens/s in float32 (train: forward+backward through all the student's decoder layers)"})
    bf16_tokens_per_s: float = field(metadata={
        "help": "measured tokens/s in bf16 (train: under autocast, float32's times the median speed-up)"})
    reason: str = field(metadata={"help": "why this format was chosen, in words"})
    tokens_per_pass: int = field(metadata={"help": "tokens in the measured batch (rows x length)"})
    seconds: float = field(metadata={"help": "wall time of the whole calibration"})
    cpu_model: str = field(metadata={"help": "CPU model name (/proc/cpuinfo)"})
    cpu_flags_digest: str = field(metadata={"help": "sha256 (16 hex) of the sorted CPU flags"})
    threads: int = field(metadata={"help": "torch intra-op threads during the measurement"})
    torch_version: str = field(metadata={"help": "torch version measured with"})
    measured_at: str = field(metadata={"help": "UTC time of the measurement (ISO 8601)"})
    outputs_identical: bool | None = field(default=None, metadata={
        "help": "generate only: greedy outputs of bf16 equal float32's on the probe prompts"})
    bf16_speedups: list = field(default_factory=list, metadata={
        "help": "train only: fp32 seconds / bf16 seconds of each timed pair (the decision uses their median)"})
    probe: str = field(default="", metadata={
        "help": "train only: what one timed pass ran (rows x tokens, decoder layers, loss positions)"})
    probe_rows: int = field(default=1, metadata={
        "help": "train only: rows of the probe micro-batch (tokens_per_pass / probe_rows tokens each)"})
    decode_step_s: float | None = field(default=None, metadata={
        "help": "train only: seconds of one greedy decoding step of the whole student (no adapter, float32) for "
                "DECODE_ROWS rows, from steps through 1 and DECODE_LAYERS layers; dry runs use it "
                "for generation before a generate stage has finished here"})
    bf16_weights: bool | None = field(default=None, metadata={
        "help": "train only: the bf16 passes ran with the frozen projections stored in bf16, as training with "
                "cast_frozen_weights stores them (false: float32 weights that autocast casts at every forward)"})
    attention: str | None = field(default=None, metadata={
        "help": "train only: the attention implementation training runs in the chosen format (sdpa: PyTorch's "
                "scaled_dot_product_attention; eager_autocast: the eager matmul-softmax-matmul with its probabilities "
                "in autocast's type), measured when attention is auto (tracekd.attention); None: the student's "
                "default, not measured"})
    attention_requested: str = field(default="auto", metadata={
        "help": "train only: the attention setting the calibration ran under (auto: measured; otherwise fixed, e.g. "
                "sdpa when the memory plan has no room for eager attention's probabilities)"})
    attention_ms: dict = field(default_factory=dict, metadata={
        "help": "train only: median milliseconds of one forward+backward of a layer's attention, per format and "
                "implementation, at the probe's shape"})
    attention_reason: str = field(default="", metadata={"help": "train only: why that attention, in words"})
    others_cpu_share: float | None = field(default=None, metadata={
        "help": "share of the CPUs other processes took while it measured (/proc/stat; over MAX_OTHERS_SHARE it "
                "is used for the run that measured it but not cached)"})
    version: int = field(default=CALIBRATION_VERSION, metadata={"help": "calibration format version"})

    @property
    def starved(self) -> bool:
        """Other processes took more than :data:`MAX_OTHERS_SHARE` of the CPUs while it measured."""
        return (self.others_cpu_share or 0.0) > MAX_OTHERS_SHARE

    @property
    def chosen(self) -> str:
        """The chosen number format (same as ``precision``)."""
        return self.precision

    @property
    def tokens_per_s(self) -> float:
        """Throughput of the chosen format."""
        return self.bf16_tokens_per_s if self.precision == "bf16" else self.fp32_tokens_per_s

    @property
    def speedup_bf16(self) -> float:
        """bf16 tokens/s over float32 tokens/s (> 1: bf16 faster)."""
        return self.bf16_tokens_per_s / self.fp32_tokens_per_s if self.fp32_tokens_per_s else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_precision(fp32_tokens_per_s: float, bf16_tokens_per_s: float, *, outputs_identical: bool | None = None,
                     margin: float = BF16_MARGIN) -> tuple[str, str]:
    """The format to use given measured throughputs (and, for generation, whether greedy outputs agree).

    >>> choose_precision(100.0, 250.0)
    ('bf16', 'bf16 2.50x faster than fp32 (measured)')
    >>> choose_precision(100.0, 105.0)[0]            # within the margin: keep the exact format
    'fp32'
    >>> choose_precision(138.0, 13.8)
    ('fp32', 'bf16 0.10x of fp32 (measured); fp32 kept')
    >>> choose_precision(100.0, 300.0, outputs_identical=False)
    ('fp32', 'bf16 3.00x faster but greedy outputs differ from fp32; fp32 kept')
    """
    if fp32_tokens_per_s <= 0 or bf16_tokens_per_s <= 0:
        raise ValueError("throughputs must be > 0")
    ratio = bf16_tokens_per_s / fp32_tokens_per_s
    if ratio < margin:
        return "fp32", f"bf16 {ratio:.2f}x of fp32 (measured); fp32 kept"
    if outputs_identical is False:
        return "fp32", f"bf16 {ratio:.2f}x faster but greedy outputs differ from fp32; fp32 kept"
    return "bf16", f"bf16 {ratio:.2f}x faster than fp32 (measured)"


def decide_from_timings(fp32_s: list[float], bf16_s: list[float], *, margin: float = BF16_MARGIN) \
        -> tuple[str, str, list[float]]:
    """The training format from paired wall times (``fp32_s[i]`` and ``bf16_s[i]`` timed back to back).

    bf16 is chosen only when the median of the per-pair speed-ups (fp32 time / bf16 time) is at
    least ``margin`` **and** bf16 won every pair (all but one of 4 or more); anything else is a tie and keeps
    float32 (the exact reference). Pairing cancels slow drifts of the machine's load, the median ignores one
    disturbed pair, and the every-pair rule keeps a noisy near-tie from flipping the choice between runs.
    Returns (format, reason, per-pair speed-ups).

    >>> decide_from_timings([1.0, 1.0, 1.0], [0.5, 0.52, 0.48])[:2]
    ('bf16', 'bf16 2.00x faster than fp32 (median of 3 paired timings, measured)')
    >>> decide_from_timings([1.0, 1.0, 1.0], [0.8, 1.05, 0.8])[:2]     # one pair lost: a tie, fp32 kept
    ('fp32', 'bf16 1.25x of fp32 (median of 3 paired timings) but slower in 1 of them; fp32 kept')
    >>> decide_from_timings([1.0, 1.0], [1.0, 0.95])[0]                # within the margin
    'fp32'
    >>> decide_from_timings([0.1, 0.1, 0.1], [1.0, 1.0, 1.0])[1]       # bf16 10x slower
    'bf16 0.10x of fp32 (median of 3 paired timings, measured); fp32 kept'
    """
    if not fp32_s or len(fp32_s) != len(bf16_s):
        raise ValueError(f"need the same number (>= 1) of fp32 and bf16 timings, got {len(fp32_s)} and {len(bf16_s)}")
    if min(fp32_s) <= 0 or min(bf16_s) <= 0:
        raise ValueError("timings must be > 0 s")
    speedups = [a / b for a, b in zip(fp32_s, bf16_s)]
    return (*decide_from_speedups(speedups, margin=margin), speedups)


def decide_from_speedups(speedups: list[float], *, margin: float = BF16_MARGIN) -> tuple[str, str]:
    """:func:`decide_from_timings` given the per-pair speed-ups (a calibration's ``bf16_speedups``).

    >>> decide_from_speedups([1.3, 1.0, 1.4])[0]     # a pair without a bf16 win is a tie
    'fp32'
    >>> decide_from_speedups([1.3, 1.2, 1.4, 1.15])
    ('bf16', 'bf16 1.25x faster than fp32 (median of 4 paired timings, measured)')
    >>> decide_from_speedups([1.25, 0.98, 1.25, 1.25])[0]  # of 4 or more pairs, one may be lost (disturbed)
    'bf16'
    """
    if not speedups:
        raise ValueError("need at least one paired timing")
    median, n = statistics.median(speedups), len(speedups)
    lost = sum(r <= 1.0 for r in speedups)
    if median < margin:
        return "fp32", f"bf16 {median:.2f}x of fp32 (median of {n} paired timings, measured); fp32 kept"
    if lost > (n - 1) // 3:  # none of 2-3 pairs, one of 4-6
        return "fp32", f"bf16 {median:.2f}x of fp32 (median of {n} paired timings) but slower in {lost} of them; fp32 kept"
    return "bf16", f"bf16 {median:.2f}x faster than fp32 (median of {n} paired timings, measured)"


def undecided(fp32_s: list[float], bf16_s: list[float], *, margin: float = BF16_MARGIN) -> bool:
    """Whether paired timings disagree about bf16: some pair has it at least ``margin`` faster and some not (a
    disturbed pass among few decides otherwise; on this project's machine the first calibration of a fresh process
    gave pairs 1.24 and 1.05, then 1.09 and 1.11, where steady ones were 1.19-1.33).

    >>> undecided([1.0, 1.0], [0.8, 0.81]), undecided([1.0, 1.0], [1.05, 1.1]), undecided([1.0, 1.0], [0.8, 1.02])
    (False, False, True)
    >>> undecided([1.0, 1.0], [0.93, 0.89])  # pairs 1.08 and 1.12: two more rounds
    True
    """
    speedups = [a / b for a, b in zip(fp32_s, bf16_s)]
    if not speedups:
        return False
    above = [r >= margin for r in speedups]
    return any(above) and not all(above)


# --------------------------------------------------------------------------- machine identity (no torch import)


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = "", []
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key == "flags" and not flags:
                flags = value.split()
            if model and flags:
                break
    return model or platform.processor() or platform.machine(), sorted(flags)


def cpu_identity() -> dict[str, str]:
    """CPU model name, flags (space-joined, sorted) and their digest (what the cache is keyed by)."""
    model, flags = _cpuinfo()
    return {"cpu_model": model, "cpu_flags": " ".join(flags),
            "cpu_flags_digest": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16]}


def bf16_flags() -> list[str]:
    """The CPU's bf16-related flags (amx_bf16, amx_tile, avx512_bf16, ...), for reports."""
    return [f for f in _cpuinfo()[1] if "bf16" in f or f.startswith("amx")]


def torch_version() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def default_threads() -> int:
    """Threads training uses: physical cores (``torch.get_num_threads`` when torch is loaded, else CPU count)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cache_path(student: str, device: str, kind: str = "train", *, threads: int | None = None,
               probe: tuple[int, int] | None = None, bf16_weights: bool = True, attention: str = "auto") -> Path | None:
    """Where the calibration of ``student`` on this machine lives (None without torch); a training
    calibration is kept per probe shape ``(rows, length)`` (:func:`probe_batch`), per way bf16 stores the
    frozen weights (``bf16_weights``: in bf16, or float32 cast by autocast) and per attention setting (``auto``:
    measured, or the one implementation allowed)."""
    tv = torch_version()
    if tv is None:
        return None
    ident = cpu_identity()
    threads = threads or default_threads()
    key = "|".join([str(CALIBRATION_VERSION), ident["cpu_model"], ident["cpu_flags_digest"], tv, str(threads),
                    student, device, kind])
    if kind == "train":
        key += f"|probe{TRAIN_PROBE_VERSION}|{probe or ''}" + ("" if bf16_weights else "|bf16-autocast-casts")
        key += "" if attention == "auto" else f"|attention-{attention}"
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(student).name or student)[:40]
    return students.cache_dir() / "calibration" / f"{slug}-{device}-{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def measured(student: str, device: str = "cpu", kind: str = "train", *, threads: int | None = None,
             probe: tuple[int, int] | None = None, bf16_weights: bool = True,
             attention: str = "auto") -> Calibration | None:
    """The cached calibration of ``student`` on ``device`` for this machine and torch build, or None.

    ``probe`` is the training probe's shape (:func:`probe_batch`). Never measures and never imports
    torch: callers that need a number now (dry-run estimates) fall back to their own rule when this is None.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return _read(cache_path(student, device, kind, threads=threads, probe=probe, bf16_weights=bf16_weights,
                            attention=attention))


def _read(path: Path | None) -> Calibration | None:
    if path is None or not path.is_file():
        return None
    try:
        cal = Calibration(**read_json(path))
    except Exception:  # noqa: BLE001 - a damaged cache entry is measured again
        return None
    return cal if cal.version == CALIBRATION_VERSION else None


def nearest(student: str, device: str = "cpu", *, tokens: int, threads: int | None = None) -> Calibration | None:
    """The cached training calibration of ``student`` on this machine whose probe is closest to ``tokens``
    per pass (dry runs use it when none was measured at their own shape), or None."""
    some = cache_path(student, device, "train", threads=threads)
    if some is None or not some.parent.is_dir():
        return None
    found = []
    for path in some.parent.glob(some.name.rsplit("-", 1)[0] + "-*.json"):
        cal = _read(path)
        # its own key (this machine, torch build, threads, probe version and shape) names the file
        if cal is not None and cal.probe and path == _path_of(cal, threads=threads or default_threads()):
            found.append(cal)
    return min(found, key=lambda c: (abs(c.tokens_per_pass - tokens), c.tokens_per_pass), default=None)


def _path_of(cal: Calibration, threads: int | None = None) -> Path | None:
    """Where ``cal`` is cached (its key from its own fields; ``threads``: those of the lookup, default its own)."""
    if cal.kind != "train":
        return cache_path(cal.student, cal.device, cal.kind, threads=threads or cal.threads)
    rows = max(1, cal.probe_rows)
    return cache_path(cal.student, cal.device, "train", threads=threads or cal.threads,
                      probe=(rows, cal.tokens_per_pass // rows), bf16_weights=cal.bf16_weights is not False,
                      attention=cal.attention_requested)


def _store(cal: Calibration) -> None:
    """Cache ``cal`` for this machine - unless other processes took so much of the CPUs while it measured
    that its figures say more about them than about the machine (it is measured again next time)."""
    if cal.starved:
        return
    path = _path_of(cal)
    if path is not None:
        with contextlib.suppress(OSError):
            write_json(path, cal.to_dict())


# --------------------------------------------------------------------------- measuring


def probe_batch(lengths: list[int], rows: int = 1) -> tuple[int, int]:
    """(rows, length) of the calibration micro-batch: shaped like training's, in few enough tokens to be quick.

    Training's micro-batch is ``rows`` rows of about the data's median length; the probe has the
    power of two at or above that many tokens (within :data:`PROBE_MIN_TOKENS` .. :data:`PROBE_MAX_TOKENS`),
    split into as many of those rows as fit whole. The shape is part of the cache key, so data of
    similar shape shares one measurement.

    >>> probe_batch([452, 600, 300])            # CoTemp rows one per micro-batch
    (1, 512)
    >>> probe_batch([150, 180, 210], rows=4)     # bAbI rows four per micro-batch: 512 tokens in 2 rows
    (2, 256)
    >>> probe_batch([40, 30, 50], rows=2)
    (2, 64)
    >>> probe_batch([])
    (1, 512)
    """
    if not lengths:
        return 1, PROBE_MAX_TOKENS
    med = max(1, sorted(lengths)[len(lengths) // 2])
    tokens = PROBE_MIN_TOKENS
    while tokens < min(PROBE_MAX_TOKENS, med * max(1, rows)):
        tokens *= 2
    n = max(1, min(rows, tokens // med))
    return n, tokens // n


def probe_layers(tokens: int, n_layers: int) -> int:
    """Decoder layers the probe runs for ``tokens`` per pass: :data:`PROBE_LAYER_TOKENS` / tokens, within 1..n.

    >>> probe_layers(512, 30), probe_layers(256, 30), probe_layers(64, 30), probe_layers(512, 2)
    (2, 4, 8, 2)
    """
    return max(1, min(n_layers, TRAIN_PROBE_LAYERS, round(PROBE_LAYER_TOKENS / max(1, tokens))))


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def calibrate_training(model, student: str, lengths: list[int], *, rows: int = 1, vocab_size: int | None = None,
                       refresh: bool = False, seed: int = 0, loss: Callable | None = None,
                       pairs: int = TRAIN_PAIRS, budget_s: float = TRAIN_BUDGET_S,
                       layers: int | None = None, bf16_modules: list | None = None,
                       attention: str = "auto") -> Calibration:
    """Time forward+backward of ``model`` (float32 weights, LoRA attached) in fp32 and under bf16 autocast.

    ``bf16_modules`` are the modules whose weights bf16 training stores in bf16 (with ``cast_frozen_weights``:
    :func:`tracekd.train.weights.frozen_linears`): the bf16 passes then run as that training does, with bf16 copies
    of those weights swapped in (float32 restored after each pass). None: autocast casts the float32 weights.

    The already-loaded training model is measured (no second load). ``lengths`` are the token counts
    of the rows to be trained and ``rows`` the rows per micro-batch (the probe's shape follows them, see
    :func:`probe_batch`; with more than one row the last is an eighth shorter, padded as length-grouped micro-batches
    are); ``loss(model, inputs)`` is training's loss (default: the model's own), so
    the probe does the work a training step does. ``attention`` ``auto`` first times the attention kernels alone in
    both formats (:func:`tracekd.attention.choose`, ~0.2 s) and runs each format's passes with its faster one;
    ``sdpa`` or ``eager`` runs both formats with that one. To stay short, a pass runs a proportional slice of
    the student: its first ``layers`` decoder layers of n (default :func:`probe_layers`) and the loss on the same share of
    the completion positions, so the mix of layer and LM-head work is the whole student's. One warm-up
    pass each through the smaller slice below (every layer has the same shapes), then up to ``pairs``
    rounds of paired timings within ``budget_s`` (:func:`time_pairs`), plus up to :data:`EXTRA_PAIRS` rounds when they
    disagree (:func:`undecided`; only those that end within :data:`CALIBRATION_CAP_S` of the start), decided by
    :func:`decide_from_timings`.

    The tokens/s figures are for the whole student's decoder layers: the first round also times a float32
    pass through half the slice's layers, for the time of one layer (the difference; a pass also pays for the embedding,
    the loss and autograd, which do not grow with depth, and scaling the whole pass by n / layers
    counted that n / layers times: 1.5x too slow on CoTemp rows), times n. bf16's figure is float32's
    times the median speed-up. Dry-run estimates turn them into a FLOP rate of the layers
    (:func:`tracekd.experiment.estimate.rate_for`).
    Uses the cache unless ``refresh``; gradients made here are cleared afterwards, and the random
    stream training draws from is left as it was. ``seconds`` is the wall time of the measurement.
    """
    import torch

    from . import attention as attn

    if attention not in attn.SETTINGS:
        raise ValueError(f"attention must be one of {attn.SETTINGS}, got {attention!r}")
    threads = torch.get_num_threads()
    rows, length = probe_batch(lengths, rows)
    bf16_weights = bf16_modules is not None
    key = {"threads": threads, "probe": (rows, length), "bf16_weights": bf16_weights, "attention": attention}
    if not refresh and (hit := measured(student, "cpu", "train", **key)) is not None:
        return hit
    t0, meter = time.monotonic(), LoadMeter.start()
    vocab = vocab_size or int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (rows, length), generator=gen)
    decoder = getattr(runtime.base_causal_lm(model), "model", None)
    all_layers = getattr(decoder, "layers", None)
    n_layers = len(all_layers) if isinstance(all_layers, torch.nn.ModuleList) else 0
    k_layers = min(n_layers, max(1, layers or probe_layers(rows * length, n_layers))) if n_layers else 0
    share = k_layers / n_layers if n_layers else 1.0
    completion = max(1, round((length - length // 2) * share))  # the second half of a row, times the share
    labels = ids.clone()
    labels[:, : length - completion] = -100  # completion-only loss, as in training
    mask = torch.ones_like(ids)
    if rows > 1:  # the shortest row of a length-grouped micro-batch, padded: the attention kernels see a mask
        mask[-1, length - attn.padded(length):] = 0
        labels[mask == 0] = -100
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    half = k_layers // 2  # the second slice, for the time of one layer
    probe = (f"{rows} x {length} tokens, " + (f"{k_layers} of {n_layers} decoder layers, " if n_layers else "")
             + f"loss on {completion} positions per row" + (f"; one layer's time from {k_layers} vs {half} layers"
                                                           if half else ""))
    if bf16_weights:
        probe += "; bf16 with the frozen projections stored in bf16"
    if rows > 1:
        probe += f"; last row padded by {attn.padded(length)}"
    # the attention implementation each format's passes run (None: the model's own)
    kernels: dict[str, str | None] = dict.fromkeys(("fp32", "bf16"), None if attention == "auto" else attention)
    chosen_kernels: dict[str, tuple[str, str, dict[str, float]]] | None = None
    loss_fn = loss or (lambda m, batch: m(**batch).loss)
    was_training = model.training
    model.train()
    # (weight, float32 data, bf16 data) of the frozen projections a pass through the slice uses
    swaps = _bf16_copies(bf16_modules or [], list(all_layers)[k_layers:] if n_layers else [])

    def step(bf16: bool) -> Callable[[], None]:
        def run() -> None:
            for weight, _, low in swaps if bf16 else ():
                weight.data = low
            try:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), \
                        attn.switched(model, kernels["bf16" if bf16 else "fp32"]):
                    value = loss_fn(model, inputs)
                value.backward()
            finally:
                for weight, full, _ in swaps if bf16 else ():
                    weight.data = full
            model.zero_grad(set_to_none=True)
        return run

    def through(layers: int, run: Callable[[], None]) -> Callable[[], None]:
        """``run`` with the decoder cut to its first ``layers`` layers."""
        def sliced() -> None:
            _keep_layers(decoder, all_layers, layers)
            try:
                run()
            finally:
                _keep_layers(decoder, all_layers, k_layers)
        return sliced

    runs = {"fp32": step(False), "bf16": step(True)}
    if half:  # the same pass through half the layers, for the time of one layer (same kernels: no warm-up); first
        # round only
        runs["half"] = through(half, step(False))
    decode: dict[int, float] | None = None
    try:
        if k_layers < n_layers:
            _keep_layers(decoder, all_layers, k_layers)
        with torch.random.fork_rng(devices=[]):  # dropout draws here must not shift training's random stream
            if attention == "auto" and n_layers:  # each format's faster attention kernels, timed alone
                chosen_kernels = attn.choose(model, rows, length)
                kernels.update({fmt: c[0] for fmt, c in (chosen_kernels or {}).items()})
            # warm-up (kernels, oneDNN primitives, allocator) through the smallest slice: every layer has the
            # same shapes, so one warms them all
            for run in (step(False), step(True)):
                (through(max(1, half), run) if n_layers else run)()
            # the first round with the half-slice pass (one sample serves the per-layer figure), then the rest
            started = time.monotonic()
            times = time_pairs(runs, pairs=1, min_pairs=1, warm_up=False)

            def more_pairs(n: int, min_pairs: int, budget: float) -> None:
                """Up to ``n`` further (fp32, bf16) rounds, their alternation continuing, added to ``times``."""
                more = time_pairs({"fp32": runs["fp32"], "bf16": runs["bf16"]}, pairs=n, min_pairs=min_pairs,
                                  budget_s=budget, warm_up=False, first_round=len(times["fp32"]))
                for name, seconds in more.items():
                    times[name] += seconds

            if pairs > 1:
                more_pairs(pairs - 1, 1, budget_s - (time.monotonic() - started))
            if n_layers > 1:
                decode = _decode_steps(model, vocab, gen, decoder, all_layers, (min(n_layers, DECODE_LAYERS), 1))
            if undecided(times["fp32"], times["bf16"]):  # pairs disagree: more rounds decide, as many as fit
                round_s = times["fp32"][-1] + times["bf16"][-1]
                extra = min(EXTRA_PAIRS, int((t0 + CALIBRATION_CAP_S - time.monotonic()) // max(round_s, 1e-9)))
                if extra > 0:
                    more_pairs(extra, extra, 0.0)
    finally:
        if n_layers:
            decoder.layers = all_layers
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    tokens = rows * length
    precision, reason, speedups = decide_from_timings(times["fp32"], times["bf16"])
    if chosen_kernels:
        attention_reason = chosen_kernels[precision][1] + f" ({precision})"
    else:
        attention_reason = ("requested" if attention != "auto" else
                            "the student's default (no eager attention function to compare with)")
    # the fastest pass of each is the least disturbed by the machine's other work
    per_layer = (min(times["fp32"]) - min(times["half"])) / (k_layers - half) if half else 0.0
    if per_layer > 0:
        fp32 = tokens / (per_layer * n_layers)
    else:  # a one-layer slice, or a difference lost in noise: the slice's time scaled up (errs slow)
        fp32 = tokens * share / min(times["fp32"])
    bf16 = fp32 * statistics.median(speedups)
    decode_step = None
    if decode:  # a step's fixed part (embedding, head, argmax) and one layer, plus every further layer's
        deep = max(decode)
        decode_step = round(decode[1] + (n_layers - 1) * max(0.0, (decode[deep] - decode[1]) / (deep - 1)), 5)
    identity = cpu_identity()
    calibration = Calibration(student=student, device="cpu", kind="train", precision=precision,
                              fp32_tokens_per_s=round(fp32, 2), bf16_tokens_per_s=round(bf16, 2), reason=reason,
                              tokens_per_pass=tokens, seconds=round(time.monotonic() - t0, 3),
                              cpu_model=identity["cpu_model"], cpu_flags_digest=identity["cpu_flags_digest"],
                              threads=threads, torch_version=torch_version() or str(torch.__version__),
                              measured_at=_now(), bf16_speedups=[round(r, 4) for r in speedups],
                              probe=probe, probe_rows=rows, decode_step_s=decode_step, bf16_weights=bf16_weights,
                              attention=kernels[precision], attention_requested=attention,
                              attention_ms={fmt: c[2] for fmt, c in (chosen_kernels or {}).items()},
                              attention_reason=attention_reason, others_cpu_share=meter.others_share())
    _store(calibration)
    return calibration


def _bf16_copies(modules: list, skipped_layers: list) -> list[tuple[Any, Any, Any]]:
    """(weight, its float32 data, a bf16 copy) of each of ``modules`` outside the decoder layers ``skipped_layers``
    (those the probe's slice leaves out)."""
    import torch

    skipped = {id(m) for layer in skipped_layers for m in layer.modules()}
    return [(mod.weight, mod.weight.data, mod.weight.data.to(torch.bfloat16))
            for mod in modules if id(mod) not in skipped and mod.weight.dtype == torch.float32]


def _keep_layers(decoder, all_layers, n: int) -> None:
    """Cut ``decoder`` to the first ``n`` of ``all_layers`` (the caller restores ``all_layers`` afterwards)."""
    import torch

    decoder.layers = torch.nn.ModuleList(list(all_layers)[:n])


def _decode_steps(model, vocab: int, gen, decoder, all_layers, slices: tuple[int, ...], steps: int = 1) \
        -> dict[int, float] | None:
    """Seconds of one greedy decoding step of ``model`` through each slice of its first n decoder layers, without its
    adapter (as a merged one runs), in float32: :data:`DECODE_ROWS` rows, one token each through the slice's own
    key/value cache, the slices taking turns; each slice's fastest of ``steps`` steps after a first one, which
    starts the cache (a prompt would add cost, not accuracy: attention over a few positions is a tiny share of a
    step). The adapter is switched off, and on again, in the largest slice's layers (the rest never was). None
    when the model cannot be stepped this way (the figure only informs dry-run estimates; training goes on
    without it)."""
    import torch

    lm = runtime.base_causal_lm(model)
    cache = runtime.cache_kwarg(lm)
    ids = torch.randint(0, vocab, (DECODE_ROWS, DECODE_PROMPT), generator=gen)
    was_training = model.training
    model.eval()
    times: dict[int, list[float]] = {n: [] for n in slices}
    _keep_layers(decoder, all_layers, max(slices))
    try:
        with torch.inference_mode(), (model.disable_adapter() if hasattr(model, "disable_adapter")
                                      else contextlib.nullcontext()):
            try:
                past: dict[int, Any] = {}
                token = {n: ids for n in slices}
                for i in range(steps + 1):
                    for n in slices:
                        _keep_layers(decoder, all_layers, n)
                        t0 = time.perf_counter()
                        out = lm(input_ids=token[n], use_cache=True, **({cache: past[n]} if i else {}))
                        token[n], past[n] = out.logits[:, -1:].argmax(-1), getattr(out, cache)
                        if i:
                            times[n].append(time.perf_counter() - t0)
            finally:
                _keep_layers(decoder, all_layers, max(slices))
    except Exception:  # noqa: BLE001 - an architecture without a key/value cache, or another forward signature
        return None
    finally:
        model.train(was_training)
    return {n: min(t) for n, t in times.items()}


def calibrate_generation(run: Callable[[str], tuple[list[str], int, float]], student: str, *,
                         threads: int | None = None) -> Calibration:
    """Decide generation's CPU precision from ``run(precision) -> (texts, completion tokens, seconds)``.

    ``run`` generates greedily on probe prompts (e.g. the generation benchmark's) in ``fp32`` and
    ``bf16``; bf16 is chosen only when it is faster by :data:`BF16_MARGIN` and every text is identical.
    The result is cached for :func:`measured` (kind ``generate``), which ``tracekd generate`` reads.
    """
    t0, meter = time.monotonic(), LoadMeter.start()
    threads = threads or default_threads()
    texts32, tok32, s32 = run("fp32")
    texts16, tok16, s16 = run("bf16")
    identical = texts32 == texts16
    fp32, bf16 = tok32 / max(s32, 1e-9), tok16 / max(s16, 1e-9)
    precision, reason = choose_precision(fp32, bf16, outputs_identical=identical)
    identity = cpu_identity()
    equal = sum(a == b for a, b in zip(texts32, texts16))
    calibration = Calibration(student=student, device="cpu", kind="generate", precision=precision,
                              fp32_tokens_per_s=round(fp32, 2), bf16_tokens_per_s=round(bf16, 2),
                              reason=reason + f" ({equal}/{len(texts32)} outputs equal)",
                              tokens_per_pass=tok32, seconds=round(time.monotonic() - t0, 3),
                              cpu_model=identity["cpu_model"], cpu_flags_digest=identity["cpu_flags_digest"],
                              threads=threads, torch_version=torch_version() or "", measured_at=_now(),
                              outputs_identical=identical, others_cpu_share=meter.others_share())
    _store(calibration)
    return calibration


def explain() -> str:
    """How ``precision: auto`` decides (for ``tracekd train --explain``)."""
    return ("precision auto: on a CUDA GPU bf16 where supported, else fp16. On CPU it is measured, not guessed: "
            "a few forward+backward passes of the already-loaded student with training's loss on a micro-batch "
            "shaped like training's (rows per micro-batch x the data's median length, rounded up to a power of two "
            f"of at most {PROBE_MAX_TOKENS} tokens, the last row padded as length-grouped micro-batches are; a slice "
            "of the decoder layers keeps it short), in float32 and under bf16 autocast with the frozen projections "
            "stored in bf16 as bf16 training stores them. With attention auto, the attention kernels are timed alone "
            "first (PyTorch's SDPA vs the model's eager attention, in each format) and each format's passes run the "
            f"faster one. Then one warm-up each, up to {TRAIN_PAIRS} back-to-back pairs, up to {EXTRA_PAIRS} more "
            f"when some pair has bf16 {BF16_MARGIN:.2f}x faster and some not (only those that end within "
            f"{CALIBRATION_CAP_S:.1f} s), the first round with a pass through half the slice for the time of one "
            "layer, and a few decoding steps for dry-run estimates: 1.1-1.7 s in all on a 2-core machine, printed "
            f"and recorded. bf16 is used only when the median speed-up of the pairs is at least {BF16_MARGIN:.2f}x and "
            "bf16 won every pair (all but one of 4 or more), otherwise float32 (the exact reference); training runs "
            "the attention that format's passes ran. The result is cached per CPU model, CPU flags, torch "
            "version, threads, student and probe shape in $TRACEKD_CACHE/calibration/ and recorded in the manifest "
            "(resolved.calibration) and in calibration.json beside the adapter (a resumed run keeps it); one during "
            f"which other processes took over {MAX_OTHERS_SHARE:.0%} of the CPUs serves its run but is not cached. "
            "`tracekd generate` on CPU decides the same way, and keeps bf16 only when its greedy outputs equal "
            "float32's on probe prompts. --precision fp32|bf16 overrides (attention is then the student's default "
            "unless --attention says otherwise).")
