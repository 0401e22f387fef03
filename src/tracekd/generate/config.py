"""``GenerateConfig``: every setting of ``tracekd generate`` (defaults = the method's inference settings).

In sections, as :mod:`tracekd.train.config`: :class:`GeneratePaths`, :class:`GenerateModel`,
:class:`DecodingSettings` and :class:`GenerateRuntime`; keys stay flat in files, flags, manifests and
attributes. :class:`GenerateSettings` is the same without the paths: an experiment's ``generate:`` section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import SECTION, sectioned
from ..errors import ConfigError, did_you_mean
from ..runtime import PRECISIONS
from .base import BACKENDS


@dataclass
class GeneratePaths:
    """The rows read and the generations written."""

    input_file: str = field(metadata={
        "help": "SFT rows JSONL whose prompts to complete (e.g. BUILD/correct/test.jsonl)",
        "aliases": ["--input", "--test-file"]})
    output_file: str = field(metadata={
        "help": "generations JSONL to write (appended to: a rerun resumes where it stopped)",
        "aliases": ["--output", "-o"]})


@dataclass
class GenerateModel:
    """The student, its adapter and its chat template."""

    student: str | None = field(default=None, metadata={
        "help": "student model (built-in, folder or Hugging Face id); default: the adapter's student, "
                "else smollm2-135m"})
    adapter: str | None = field(default=None, metadata={
        "help": "LoRA adapter folder from `tracekd train` (none: the untrained student)"})
    merge_adapter: bool = field(default=False, metadata={
        "help": "vllm: merge the adapter into the weights instead of serving it as a LoRA request"})
    chat_template_kwargs: dict | None = field(default=None, metadata={
        "help": "extra variables of the chat template: a JSON object on the command line "
                "(--chat-template-kwargs '{\"date_string\": \"26 Jul 2024\"}'), a mapping in a YAML config "
                "(chat_template_kwargs: {date_string: 26 Jul 2024}); default: the adapter's training setting "
                "(a template that stamps the date gets the same pinned date)"})


@dataclass
class DecodingSettings:
    """How each completion is decoded."""

    max_new_tokens: int = field(default=500, metadata={"help": "token limit of each completion"})
    do_sample: bool = field(default=False, metadata={"help": "sample instead of greedy decoding"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (with --do-sample)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass (with --do-sample)"})
    top_k: int = field(default=0, metadata={"help": "top-k sampling (0 = off; with --do-sample)"})
    seed: int = field(default=42, metadata={"help": "sampling seed (each batch is seeded from it and its ids)"})

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.do_sample and (self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0):
            raise ConfigError("sampling needs temperature > 0, 0 < top_p <= 1 and top_k >= 0")


@dataclass
class GenerateRuntime:
    """Which rows, in what batches, on which backend and number format."""

    backend: str = field(default="hf", metadata={
        "help": "hf (transformers, CPU or GPU) or vllm (GPU, optional extra)", "choices": list(BACKENDS)})
    max_examples: int | None = field(default=None, metadata={
        "help": "generate for a seeded random subset of N rows (kept in file order); default all"})
    batch_size: int = field(default=48, metadata={
        "help": "prompts per batch, decoded together (hf); prompts per request chunk written together (vllm)"})
    sort_by_length: bool = field(default=True, metadata={
        "help": "batch prompts of similar length together (longest first) to cut padding"})
    shared_prefix: bool = field(default=True, metadata={
        "help": "hf: prefill the tokens every prompt of a batch begins with (system turn, instruction) once "
                "and reuse their key/value cache for each row"})
    drop_finished: bool = field(default=True, metadata={
        "help": "hf, greedy: decode in tracekd's own loop, where a row that has ended leaves the batch "
                "(model.generate decodes it as padding until the batch's longest row ends); same tokens"})
    prefill_batch_size: int = field(default=16, metadata={
        "help": "hf, greedy: prompts of a batch prefilled together (similar lengths, little padding) before "
                "the whole batch decodes"})
    precision: str = field(default="auto", metadata={
        "help": "number format: auto (on CPU the measured faster of fp32 and bf16 with identical greedy outputs, "
                "else fp32; on CUDA bf16 at compute capability >= 8.0, fp16 below), fp32, bf16, fp16",
        "choices": list(PRECISIONS)})
    deterministic: bool = field(default=False, metadata={
        "help": "PyTorch's deterministic algorithms (warn-only) and cuBLAS workspace (see README: GPUs)"})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vllm: fraction of GPU memory to use"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm: GPUs to shard the model over"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar with tokens/s"})

    def __post_init__(self) -> None:
        for name in ("batch_size", "prefill_batch_size", "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_examples is not None and self.max_examples < 1:
            raise ConfigError(f"max_examples must be >= 1 (or unset), got {self.max_examples}")
        if self.backend not in BACKENDS:
            raise ConfigError(did_you_mean(self.backend, BACKENDS, "backend"))
        if self.precision not in PRECISIONS:
            raise ConfigError(did_you_mean(self.precision, PRECISIONS, "precision"))


@sectioned
@dataclass(init=False)
class GenerateSettings:
    """Every generation setting but the paths: an experiment's ``generate:`` section (checked when it loads).

    The experiment sets ``student``, ``adapter`` and ``seed`` for each cell.
    """

    model: GenerateModel = field(default_factory=GenerateModel, metadata=SECTION)
    decoding: DecodingSettings = field(default_factory=DecodingSettings, metadata=SECTION)
    runtime: GenerateRuntime = field(default_factory=GenerateRuntime, metadata=SECTION)


@sectioned
@dataclass(init=False)
class GenerateConfig:
    """Generate one completion per SFT row with a student (+ optional LoRA adapter); append-only, resumable."""

    paths: GeneratePaths = field(metadata=SECTION)
    model: GenerateModel = field(default_factory=GenerateModel, metadata=SECTION)
    decoding: DecodingSettings = field(default_factory=DecodingSettings, metadata=SECTION)
    runtime: GenerateRuntime = field(default_factory=GenerateRuntime, metadata=SECTION)


def hf_sampling(do_sample: bool, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0) -> dict:
    """``transformers.GenerationConfig`` decoding fields, every one explicit (``top_k`` 0 = off).

    Left unset, transformers fills ``top_k`` with 50; an explicit 0 turns it off, as ``-1`` does in vLLM.

    >>> hf_sampling(True, 0.7, 0.9, 0)
    {'do_sample': True, 'num_beams': 1, 'temperature': 0.7, 'top_p': 0.9, 'top_k': 0, 'min_p': None, \
'typical_p': 1.0, 'repetition_penalty': 1.0}
    >>> hf_sampling(False)
    {'do_sample': False, 'num_beams': 1}
    """
    if not do_sample:
        return {"do_sample": False, "num_beams": 1}
    return {"do_sample": True, "num_beams": 1, "temperature": float(temperature), "top_p": float(top_p),
            "top_k": int(top_k), "min_p": None, "typical_p": 1.0, "repetition_penalty": 1.0}


def vllm_sampling(do_sample: bool, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, *,
                  max_new_tokens: int, stop_token_ids=(), seed: int | None = None) -> dict:
    """``vllm.SamplingParams`` keyword arguments meaning the same as :func:`hf_sampling` (``top_k`` off = -1).

    Greedy is temperature 0 (vLLM then ignores the other sampling values).

    >>> vllm_sampling(True, 0.7, 0.9, 0, max_new_tokens=500, stop_token_ids={2}, seed=7)["top_k"]
    -1
    >>> vllm_sampling(False, max_new_tokens=5)
    {'max_tokens': 5, 'stop_token_ids': [], 'skip_special_tokens': True, 'ignore_eos': False, 'temperature': 0.0, \
'top_p': 1.0, 'top_k': -1, 'min_p': 0.0, 'repetition_penalty': 1.0, 'presence_penalty': 0.0, \
'frequency_penalty': 0.0, 'seed': None}
    """
    common = {"max_tokens": int(max_new_tokens), "stop_token_ids": sorted(int(i) for i in stop_token_ids),
              "skip_special_tokens": True, "ignore_eos": False}
    neutral = {"min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
    if not do_sample:
        return {**common, "temperature": 0.0, "top_p": 1.0, "top_k": -1, **neutral, "seed": None}
    return {**common, "temperature": float(temperature), "top_p": float(top_p),
            "top_k": int(top_k) if top_k > 0 else -1, **neutral, "seed": seed}
