"""``TrainConfig``: every setting of ``tracekd train``, with the method's defaults, in sections.

The sections follow TRL's split of a fine-tuning script's arguments (script paths, ``ModelConfig``,
``SFTConfig``): :class:`TrainPaths` (what is read and written), :class:`ModelSettings` (student and
LoRA), :class:`DataSettings` (rows and their length), :class:`OptimizerSettings` (steps, learning rate,
batch), :class:`ComputeSettings` (device, number format, memory levers) and :class:`RuntimeSettings`
(seed, checkpoints, logging). Names follow TRL where TRL has the setting, so a TRL user reads them at
sight. Keys stay flat everywhere - YAML files, flags (a field name with dashes, plus a few short
aliases), manifests and attributes (``config.learning_rate`` is ``config.optimizer.learning_rate``).

:class:`TrainSettings` is the same without the paths: an experiment's ``train:`` section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import SECTION, sectioned
from ..devices import parse_device
from ..errors import ConfigError, did_you_mean
from ..runtime import PRECISIONS
from ..students import DEFAULT_STUDENT
from .. import attention
from .memory import parse_size

#: the method's LoRA targets: attention q,k,v,o and MLP gate,up,down projections
METHOD_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

LOSS_IMPLEMENTATIONS = ("auto", "completion-head", "model", "trl")

ATTENTION_SETTINGS = attention.SETTINGS


def _at_least_one(section: object, *names: str) -> None:
    for name in names:
        if getattr(section, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(section, name)}")


@dataclass
class TrainPaths:
    """What training reads and writes."""

    train_file: str = field(metadata={
        "help": "the arm's train JSONL (SFT rows from `tracekd build`, TRL prompt-completion format)",
        "aliases": ["--train"]})
    output_dir: str = field(metadata={
        "help": "output folder: the LoRA adapter, manifest.json, train_log.jsonl, preflight.json, checkpoints/",
        "aliases": ["--output", "-o"]})


@dataclass
class ModelSettings:
    """The student and its LoRA adapter (TRL's ModelConfig)."""

    student: str = field(default=DEFAULT_STUDENT, metadata={
        "help": "student model: a built-in (smollm2-135m, tiny-random), a local folder or a Hugging Face id"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    lora_target_modules: list[str] = field(default_factory=lambda: list(METHOD_TARGET_MODULES), metadata={
        "help": "module names to adapt (comma-separated), or all-linear"})
    qlora: bool = field(default=False, metadata={
        "help": "QLoRA: load the student in 4-bit NF4 with double quantisation (bitsandbytes, CUDA only)"})
    chat_template_kwargs: dict = field(default_factory=dict, metadata={
        "help": "extra variables of the chat template: a JSON object on the command line "
                "(--chat-template-kwargs '{\"date_string\": \"26 Jul 2024\"}'), a mapping in a YAML config "
                "(chat_template_kwargs: {date_string: 26 Jul 2024}); Llama 3.x is pinned to that date when unset; "
                "the preflight refuses settings whose generation prompt is not a prefix of the training text, "
                "such as Qwen3's enable_thinking: false on arms with traces"})

    def __post_init__(self) -> None:
        _at_least_one(self, "lora_r", "lora_alpha")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.lora_target_modules:
            raise ConfigError("lora_target_modules must name at least one module (or all-linear)")


@dataclass
class DataSettings:
    """Which rows are trained on, and how long they may be."""

    max_examples: int | None = field(default=None, metadata={
        "help": "train on a seeded random subset of this many rows (CPU-scale runs); default all"})
    max_length: int = field(default=2048, metadata={
        "help": "longest tokenised row (prompt + completion); the preflight reports longer rows"})
    drop_overlong: bool = field(default=False, metadata={
        "help": "drop rows longer than max_length or with no trainable token (reported) instead of failing; "
                "completions are never truncated"})

    def __post_init__(self) -> None:
        _at_least_one(self, "max_length")
        if self.max_examples is not None and self.max_examples < 1:
            raise ConfigError(f"max_examples must be >= 1 (or unset), got {self.max_examples}")


@dataclass
class OptimizerSettings:
    """Steps, learning-rate schedule and batch (TRL's SFTConfig / transformers' TrainingArguments names)."""

    num_train_epochs: float = field(default=3.0, metadata={
        "help": "passes over the training rows", "aliases": ["--epochs"]})
    max_steps: int | None = field(default=None, metadata={
        "help": "stop after this many optimizer steps (overrides epochs)"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate", "aliases": ["--lr"]})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "learning-rate schedule (transformers name)"})
    warmup_steps: float = field(default=0.1, metadata={
        "help": "linear warm-up: a value < 1 is a fraction of all steps, >= 1 a number of steps"})
    per_device_train_batch_size: int = field(default=4, metadata={
        "help": "rows per forward pass and device", "aliases": ["--batch-size"]})
    gradient_accumulation_steps: int = field(default=4, metadata={
        "help": "forward passes per optimizer step (effective batch = batch size x this x devices)",
        "aliases": ["--grad-accum"]})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 = off)"})
    optim: str = field(default="auto", metadata={
        "help": "optimizer (transformers name); auto = paged_adamw_8bit on CUDA with bitsandbytes "
                "(the method's), adamw_torch_fused otherwise (transformers' default; adamw_torch is the "
                "per-tensor loop)"})

    def __post_init__(self) -> None:
        _at_least_one(self, "per_device_train_batch_size", "gradient_accumulation_steps")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1 (or unset), got {self.max_steps}")
        if self.learning_rate <= 0 or self.num_train_epochs <= 0 or self.warmup_steps < 0:
            raise ConfigError("learning_rate and num_train_epochs must be > 0 and warmup_steps >= 0")


@dataclass
class ComputeSettings:
    """Where and how the steps run: device, number format and the memory levers."""

    precision: str = field(default="auto", metadata={
        "help": "number format: auto (CPU: fp32 or bf16 autocast, whichever a ~1-2 s measurement of the student on "
                "this machine finds faster, cached per CPU/torch/student in $TRACEKD_CACHE/calibration; CUDA: bf16 at "
                "compute capability >= 8.0, fp16 below, e.g. T4, V100), fp32, bf16, fp16",
        "choices": list(PRECISIONS)})
    device: str = field(default="auto", metadata={
        "help": "auto (the first visible GPU, else CPU), cpu, or cuda:N; one process trains on one GPU, "
                "`accelerate launch -m tracekd.cli train` trains data-parallel on all"})
    deterministic: bool = field(default=False, metadata={
        "help": "PyTorch's deterministic algorithms (warn-only) and cuBLAS workspace; CPU runs are bit-identical "
                "without it, CUDA runs are not bit-identical even with it (see README)"})
    gradient_checkpointing: bool | None = field(default=None, metadata={
        "help": "recompute activations to save memory; default on for CUDA, off on CPU"})
    max_memory: str = field(default="auto", metadata={
        "help": "memory budget of training: auto (half the machine's RAM on CPU, 90% of the GPU's memory), a "
                "size (4GB, 512MB) or off; when the estimate of a batch exceeds it, each optimizer step is split "
                "into smaller micro-batches (same rows, same loss) of one fixed size, or sized by tokens with "
                "micro_batches_by_tokens, then activation checkpointing is switched on for rows too long to fit "
                "alone; a row that cannot fit even alone is an error before the model loads"})
    loss_implementation: str = field(default="auto", metadata={
        "help": "auto (completion-head where the model allows on CPU / without Triton, else TRL's), completion-head "
                "(LM head only on completion positions: same loss and gradients, far smaller logits), model (the "
                "model's own full-logits cross-entropy), trl (TRL's fused LM-head loss)",
        "choices": list(LOSS_IMPLEMENTATIONS)})
    attention: str = field(default="auto", metadata={
        "help": "attention kernels: auto (CPU with precision auto: the calibration times PyTorch's SDPA and "
                "eager_autocast alone, in each number format at the probe's shape, and uses eager_autocast where it "
                "is clearly faster and the memory plan has room for its per-layer probabilities - on this project's "
                "machine 2-3x faster attention in bf16 on bAbI micro-batches of 4 padded rows; otherwise the "
                "student's default, SDPA), sdpa, eager (transformers' own), eager_autocast (eager with the softmax "
                "in autocast's type: the same forward values, one bf16 copy of the probabilities instead of float32 "
                "and bf16; tracekd.attention)",
        "choices": list(ATTENTION_SETTINGS)})
    micro_batches_by_length: bool = field(default=True, metadata={
        "help": "within each optimizer step, put rows of similar length in the same micro-batch (less padding); "
                "the step keeps exactly its rows and its loss (normalised over the whole step), rows never move "
                "to another step; the dropout masks drawn differ"})
    micro_batches_by_tokens: bool = field(default=False, metadata={
        "help": "under max_memory (with micro_batches_by_length): pack each step's rows, longest first, into as "
                "few micro-batches as fit the budget instead of one fixed size. Off by default, by measurement: on "
                "the CoTemp CPU recipe it peaked at 3.79 GiB against its 3.5 GB budget and ran 6% slower than "
                "one row per micro-batch (docs/results)"})
    bit_dropout: bool = field(default=True, metadata={
        "help": "CPU: LoRA dropout masks from 16-bit random words (tracekd.train.dropout.BitDropout) instead of "
                "torch's per-element Bernoulli draws, which took ~21% of a bAbI step here; same independent "
                "per-element masks, p rounded to a multiple of 1/65536 (0.05 -> 0.0500031, recorded in the manifest)"})
    cast_frozen_weights: bool = field(default=True, metadata={
        "help": "CPU bf16: store the frozen base projections in bf16 once instead of letting autocast cast them at "
                "every forward (the same values: loss and gradients equal), and copy the remaining frozen weights out "
                "of the memory-mapped checkpoint; measured on the demo's rows: 0.45 GiB less peak memory (2.78 -> "
                "2.33 GiB), the same speed (benchmarks/bench_train.py --levers cast-weights --pairs 3: 1.01x)"})
    return_freed_memory: bool = field(default=True, metadata={
        "help": "CPU: glibc hands freed activation-sized blocks back to the OS at once (fixed 1 MiB mmap "
                "threshold), so peak RSS tracks the live tensors; it costs page faults (measured on CoTemp rows, "
                "one row per micro-batch: 0.4 GB lower peak, 1.2x slower steps, benchmarks/bench_memory.py), and after every "
                "micro-batch the heap's free pages go back too (malloc_trim); false keeps glibc's defaults (as "
                "TRACEKD_KEEP_MALLOC=1 does)"})

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(did_you_mean(self.precision, PRECISIONS, "precision"))
        if self.loss_implementation not in LOSS_IMPLEMENTATIONS:
            raise ConfigError(did_you_mean(self.loss_implementation, LOSS_IMPLEMENTATIONS, "loss_implementation"))
        if self.attention not in ATTENTION_SETTINGS:
            raise ConfigError(did_you_mean(self.attention, ATTENTION_SETTINGS, "attention"))
        if str(self.max_memory).strip().lower() != "auto":
            parse_size(self.max_memory)

        parse_device(self.device)


@dataclass
class RuntimeSettings:
    """Seed, checkpoints, resuming and logging."""

    seed: int = field(default=42, metadata={"help": "seed of the subset, LoRA init, data order and dropout"})
    save_steps: int = field(default=50, metadata={"help": "write a checkpoint every this many optimizer steps"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept (oldest deleted)"})
    resume: bool = field(default=False, metadata={
        "help": "continue from the last checkpoint in output_dir (starts fresh when there is none)"})
    report_to: str = field(default="none", metadata={
        "help": "experiment trackers of transformers (e.g. wandb, tensorboard); the local train_log.jsonl is "
                "always written"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        _at_least_one(self, "save_steps", "save_total_limit")


@sectioned
@dataclass(init=False)
class TrainSettings:
    """Every training setting but the paths: an experiment's ``train:`` section (checked when it loads).

    The experiment sets ``student`` and ``seed`` for each cell (from its ``students`` and ``seeds``).
    """

    model: ModelSettings = field(default_factory=ModelSettings, metadata=SECTION)
    data: DataSettings = field(default_factory=DataSettings, metadata=SECTION)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings, metadata=SECTION)
    compute: ComputeSettings = field(default_factory=ComputeSettings, metadata=SECTION)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings, metadata=SECTION)


@sectioned
@dataclass(init=False)
class TrainConfig:
    """LoRA / QLoRA fine-tuning of a student on one arm's SFT rows (defaults = the method's GPU settings)."""

    paths: TrainPaths = field(metadata=SECTION)
    model: ModelSettings = field(default_factory=ModelSettings, metadata=SECTION)
    data: DataSettings = field(default_factory=DataSettings, metadata=SECTION)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings, metadata=SECTION)
    compute: ComputeSettings = field(default_factory=ComputeSettings, metadata=SECTION)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings, metadata=SECTION)
