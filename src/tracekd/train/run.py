"""``train(config)``: LoRA / QLoRA fine-tuning with TRL's ``SFTTrainer``, resumable and recorded.

Output folder (``config.paths.output_dir``)::

    adapter_config.json, adapter_model.safetensors   the LoRA adapter (PEFT), loadable as it is
    tokenizer files                                   the student's tokenizer and chat template
    manifest.json      base model + weight sha256, resolved LoRA targets, every hyper-parameter,
                       library versions, data sha256, row counts, the loss curve, timings
    train_log.jsonl    one line per optimizer step: loss, learning rate, grad norm, tokens, row ids
    preflight.json     the tokenisation report (over-long / untrainable rows)
    train_config.json  the config this run started with (a resume must match it)
    checkpoints/       checkpoint-N folders (adapter, optimizer, scheduler, RNG states)

The same command runs under ``accelerate launch`` on several GPUs (the Trainer shards the data;
only the main process writes the files above).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .. import devices, runtime, students
from ..calibration import Calibration, calibrate_training
from ..config import load_config, to_dict
from ..errors import ConfigError
from ..fingerprint import Fingerprint
from ..io import JsonlAppender, iter_jsonl, manifest, sha256_file, write_json, write_text
from .. import attention as attn
from . import memory
from .batch import keep_global_batch, regroup_step
from .config import TrainConfig
from .data import Preflight, Tokenized, preflight
from .loss import completion_loss, drop_weight_casts, supports
from .weights import cast_frozen_linears, frozen_linears, keep_adapter_inputs, own_frozen_weights

#: config fields a resumed run may change without changing what is trained
RESUME_MAY_CHANGE = {"resume", "progress", "save_steps", "save_total_limit", "max_steps", "output_dir", "report_to",
                     "device", "deterministic"}

#: config fields a finished run may be asked again with and still count as done
ALREADY_TRAINED_MAY_CHANGE = {"resume"}

LOG_NAME = "train_log.jsonl"


def _main_process() -> bool:
    if "RANK" in os.environ:  # accelerate launch / torchrun, also before the process group exists (CPU: gloo)
        return os.environ["RANK"] == "0"
    from accelerate import PartialState

    return PartialState().is_main_process


def _resolved_targets(model) -> list[str]:
    """Names of the modules PEFT actually wrapped with LoRA (sorted, de-duplicated by leaf name)."""
    from peft.tuners.lora import LoraLayer

    return sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, LoraLayer)})


def last_complete_checkpoint(ckpt_dir: Path, *, cleanup: bool = True) -> Path | None:
    """The newest checkpoint whose ``trainer_state.json`` (written last) is whole; newer, torn ones are removed.

    A kill while a checkpoint is being written leaves a folder without (or with a torn) state file;
    resuming from it would fail, so it is deleted and the previous checkpoint is used.
    """
    if not ckpt_dir.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in ckpt_dir.iterdir()
                    if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))), reverse=True)
    for _, path in found:
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            return path
        except (OSError, ValueError):
            if cleanup:
                shutil.rmtree(path, ignore_errors=True)
    return None


def _check_resume(cfg: TrainConfig, out: Path) -> str | None:
    """The checkpoint to resume from (or None), after checking the folder is this run's."""
    ckpt_dir = out / "checkpoints"
    saved_path = out / "train_config.json"
    main = _main_process()
    if not cfg.runtime.resume:
        if last_complete_checkpoint(ckpt_dir, cleanup=False) or (out / "manifest.json").exists():
            raise ConfigError(f"{out} holds an earlier training run; pass --resume to continue it, "
                              "or choose another --output-dir")
        return None
    if saved_path.exists():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        now = to_dict(cfg)
        # a setting missing from the saved file is newer than that run: not a difference
        diff = Fingerprint.of(now, ignore=RESUME_MAY_CHANGE).changes(saved)
        if diff:
            details = ", ".join(diff)
            raise ConfigError(f"--resume with different settings than the run in {out} ({details}); "
                              "resume with the same settings or train into another folder")
    last = last_complete_checkpoint(ckpt_dir, cleanup=main)
    return str(last) if last else None


def _truncate_log(path: Path, last_step: int) -> None:
    """Keep only the log lines of steps the checkpoint holds (later ones are re-run)."""
    if not path.exists():
        return
    keep = [obj for _, obj in iter_jsonl(path) if obj.get("step", 0) <= last_step]
    write_text(path, "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in keep))


def _make_trainer_class(plain_loss: bool = False, head_on_completion: bool = False, by_length: bool = False,
                        plan: memory.Plan | None = None, trim_heap: bool = False):
    """SFTTrainer that records which rows made each optimizer step and logs every step to JSONL.

    With ``plain_loss`` the loss is the model's own cross-entropy on the (completion-only) labels,
    as in ``transformers.Trainer``, instead of TRL's fused LM-head kernel: without Triton (on CPU)
    that kernel falls back to a PyTorch loop that made smollm2-135m steps 2.3x slower here, for
    the same loss values. With ``head_on_completion`` too, the LM head runs only on the positions
    that carry a loss (:mod:`.loss`): same value and gradients, a fraction of the logits' memory.
    With ``by_length`` each optimizer step's rows are regrouped into micro-batches of similar length
    (:func:`.batch.regroup_step`; needs ``tracekd_features``), or packed to the memory ``plan``'s budget
    when it packs. A ``plan`` with checkpointing for some micro-batches only switches it per micro-batch
    (:func:`.memory.set_checkpointing`). With ``trim_heap`` the heap's free pages go back to the OS after each
    micro-batch (:func:`.memory.trim_heap`).
    """
    import torch
    from accelerate.utils import gather_object
    from transformers import Trainer
    from trl import SFTTrainer

    class TracekdTrainer(SFTTrainer):
        tracekd_log: JsonlAppender | None = None
        tracekd_ids: list[str] = []
        tracekd_row_ids: list[str] = []
        tracekd_features: list[dict] = []

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
            if by_length and self.tracekd_features:
                batches = regroup_step(batches, self.tracekd_features, self.data_collator, plan)
            return batches, num_items

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if head_on_completion and not return_outputs and "labels" in inputs:
                # completion_loss calls the decoder itself, past the model.forward that accelerate wraps in
                # autocast (transformers 5 leaves autocast to accelerate): enter it here, or bf16/fp16 runs float32
                with self.accelerator.autocast():
                    loss = completion_loss(model, inputs, num_items_in_batch)
                if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                    loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss scales it
                return loss
            if plain_loss:
                return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

        def training_step(self, model, inputs, *args, **kwargs):
            if inputs["input_ids"].shape[0] == 0:  # a packed step's placeholder (see regroup_step)
                return torch.zeros((), device=self.args.device)
            recompute = inputs.pop("tracekd_checkpoint", None)
            if plan is not None and plan.gradient_checkpointing and plan.checkpoint_above_tokens is not None:
                memory.set_checkpointing(model, recompute if recompute is not None
                                         else inputs["input_ids"].numel() > plan.checkpoint_above_tokens)
            idx = inputs.pop("row_index", None)
            if idx is not None:
                self.tracekd_ids.extend(self.tracekd_row_ids[i] for i in idx.tolist())
            loss = super().training_step(model, inputs, *args, **kwargs)
            if trim_heap:
                memory.trim_heap()
            return loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            super().log(logs, start_time)
            if "loss" not in logs:
                return
            ids = self.tracekd_ids
            if self.accelerator.num_processes > 1:
                ids = gather_object(ids)
            self.tracekd_ids = []
            if self.tracekd_log is not None and self.is_world_process_zero():
                rec = {"step": self.state.global_step, "epoch": round(float(self.state.epoch or 0), 6),
                       "loss": logs["loss"], "learning_rate": logs.get("learning_rate"),
                       "grad_norm": logs.get("grad_norm"), "tokens_seen": self.state.num_input_tokens_seen,
                       "ids": list(ids)}
                self.tracekd_log.write(rec)

    return TracekdTrainer


def _collator(pad_token_id: int):
    """TRL's padding collator, passing ``row_index`` through so the trainer can log row ids."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    base = DataCollatorForLanguageModeling(pad_token_id=pad_token_id)

    def collate(features: list[dict]) -> dict:
        batch = base([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
        batch["row_index"] = torch.tensor([f["row_index"] for f in features], dtype=torch.long)
        return batch

    return collate


def _progress_callback():
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        bar = None
        t0 = 0.0
        tokens0 = 0

        def on_train_begin(self, args, state, control, **kw):
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                                dynamic_ncols=True)
                self.t0, self.tokens0 = time.monotonic(), state.num_input_tokens_seen

        def on_log(self, args, state, control, logs=None, **kw):
            if self.bar is not None and logs and "loss" in logs:
                dt = max(1e-9, time.monotonic() - self.t0)
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}",
                                     tok_s=f"{(state.num_input_tokens_seen - self.tokens0) / dt:.0f}")

        def on_step_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_train_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.close()

    return Progress()


def _quantization(cfg: TrainConfig, device: str, precision: str = "bf16"):
    if not cfg.model.qlora:
        return None
    if device != "cuda":
        raise ConfigError("--qlora (4-bit NF4 through bitsandbytes) needs a CUDA GPU, and this machine has none; "
                          "train with plain LoRA (leave out --qlora)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("--qlora needs bitsandbytes: pip install 'tracekd[qlora]'")
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def _optim(cfg: TrainConfig, device: str) -> str:
    if cfg.optimizer.optim != "auto":
        return cfg.optimizer.optim
    if device == "cuda" and importlib.util.find_spec("bitsandbytes") is not None:
        return "paged_adamw_8bit"
    return "adamw_torch_fused"  # transformers' own default: one kernel for all LoRA tensors (5-7x faster on CPU)


def _peft_model(cfg: TrainConfig, student, device: str, precision: str, checkpointing: bool, log):
    """The student (4-bit for QLoRA) wrapped with the LoRA adapter, and the module names adapted."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    quant = _quantization(cfg, device, precision)
    device_map = None
    if quant is not None:
        from accelerate import PartialState

        device_map = {"": PartialState().local_process_index}
    # on CPU the weights stay float32 and bf16 means autocast (what the calibration measured)
    weights = "fp32" if device == "cpu" or precision == "fp16" else precision
    model = students.load_model(student, dtype=runtime.torch_dtype(weights),
                                quantization_config=quant, device_map=device_map)
    model.config.use_cache = False
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    lora = LoraConfig(r=cfg.model.lora_r, lora_alpha=cfg.model.lora_alpha, lora_dropout=cfg.model.lora_dropout,
                      bias="none", task_type="CAUSAL_LM",
                      target_modules=("all-linear" if cfg.model.lora_target_modules == ["all-linear"]
                                      else list(cfg.model.lora_target_modules)))
    try:
        model = get_peft_model(model, lora)
    except ValueError as e:
        raise ConfigError(f"LoRA target modules {cfg.model.lora_target_modules} do not fit student "
                          f"{cfg.model.student!r}: {e}") from None
    from .dropout import use_bit_dropout

    if device == "cpu" and cfg.compute.bit_dropout and use_bit_dropout(model):
        log(f"LoRA dropout {cfg.model.lora_dropout}: masks from {_dropout_masks(model)} (bit_dropout)")
    if device == "cpu" and quant is None:  # float32 weights: autocast's bf16 input stays bf16 (tested on CPU)
        keep_adapter_inputs(model)
    targets = _resolved_targets(model)
    missing = [t for t in cfg.model.lora_target_modules if t != "all-linear" and t not in targets]
    if missing:
        log(f"warning: student {cfg.model.student!r} has no module named {', '.join(missing)}; adapted: {targets}")
    return model, targets


def _calibration(out: Path, last_ckpt: str | None, model, student_name: str, kept: list[Tokenized],
                 head_on_completion: bool = False, rows: int = 1, bf16_weights: bool = True, attention: str = "auto"):
    """The precision calibration of this run: a resumed run keeps the one it started with (same format, same bytes).

    The probe uses training's loss (the LM head on completion positions when training does) on micro-batches
    of ``rows`` rows (the memory plan's).
    """
    path = out / "calibration.json"
    if last_ckpt is not None and path.is_file():
        try:
            return Calibration(**json.loads(path.read_text(encoding="utf-8")))
        except (TypeError, ValueError):
            pass
    cal = calibrate_training(model, student_name, [len(t.input_ids) for t in kept], rows=rows,
                             loss=completion_loss if head_on_completion else None,
                             bf16_modules=frozen_linears(model) if bf16_weights else None, attention=attention)
    if _main_process():
        write_json(path, cal.to_dict())
    return cal


def _memory_plan(cfg: TrainConfig, out: Path, last_ckpt: str | None, student, kept: list[Tokenized], device: str,
                 accumulation: int, head_on_completion: bool, log, *, eager_attention: bool = False,
                 record: bool = True):
    """Micro-batch size, accumulation and checkpointing that fit ``cfg.compute.max_memory`` (a resumed run keeps
    its plan); with ``eager_attention`` counting each layer's attention probabilities; ``record``: log a changed
    batch and write memory_plan.json."""
    path = out / "memory_plan.json"
    shape = memory.Shape.from_folder(student.source) if Path(student.source).is_dir() else None
    if shape is not None and eager_attention:
        shape = dataclasses.replace(shape, eager_attention=True)
    lora = memory.lora_parameters(shape, cfg.model.lora_r, cfg.model.lora_target_modules) if shape else 0
    if last_ckpt is not None and path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        packed = (memory.Budget(shape, saved["budget_bytes"], lora, head_on_completion)
                  if shape and saved.get("micro_batches") == "packed to the budget" else None)
        return memory.Plan(saved["per_device_train_batch_size"], saved["gradient_accumulation_steps"],
                           saved["gradient_checkpointing"], None, None, "kept from the interrupted run",
                           checkpoint_above_tokens=saved.get("checkpoint_above_tokens"), packed=packed), saved
    checkpointing = (cfg.compute.gradient_checkpointing if cfg.compute.gradient_checkpointing is not None
                     else (True if device == "cuda" else None))
    longest = max(kept, key=lambda t: len(t.input_ids))
    plan = memory.plan(shape, [(len(t.input_ids), t.trainable) for t in kept],
                       batch_size=cfg.optimizer.per_device_train_batch_size, grad_accum=accumulation,
                       budget_bytes=memory.budget(cfg.compute.max_memory, device), trainable_params=lora,
                       checkpointing=checkpointing, head_on_completion=head_on_completion,
                       longest_id=f"{longest.id}, line {longest.line}",
                       pack=cfg.compute.micro_batches_by_tokens and cfg.compute.micro_batches_by_length)
    if record and (plan.per_device_train_batch_size != cfg.optimizer.per_device_train_batch_size or (
            plan.gradient_checkpointing and not checkpointing)):
        log(f"max_memory {cfg.compute.max_memory}: {plan.reason}")
    saved = plan.to_dict()
    if record and _main_process():
        write_json(path, saved)
    return plan, saved


def _runs_alike(a: dict, b: dict) -> bool:
    """Whether two recorded memory plans split and recompute the steps alike (fixed micro-batches only).

    >>> p = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "gradient_checkpointing": False,
    ...      "checkpoint_above_tokens": None, "micro_batches": "fixed", "estimate": {"attention": 0}}
    >>> _runs_alike(p, {**p, "estimate": {"attention": 10}}), _runs_alike(p, {**p, "per_device_train_batch_size": 2})
    (True, False)
    """
    keys = ("per_device_train_batch_size", "gradient_accumulation_steps", "gradient_checkpointing",
            "checkpoint_above_tokens", "micro_batches")
    return a.get("micro_batches") == "fixed" and all(a.get(k) == b.get(k) for k in keys)


def _sft_config(cfg: TrainConfig, out: Path, device: str, precision: str, checkpointing: bool,
                accumulation: int | None = None, per_device: int | None = None):
    """TRL's ``SFTConfig`` for this run: rows come tokenised, every step is logged, checkpoints in out/checkpoints."""
    from trl import SFTConfig

    checkpointing_field = ("activation_checkpointing" if "activation_checkpointing" in
                           {f.name for f in dataclasses.fields(SFTConfig)} else "gradient_checkpointing")
    return SFTConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.optimizer.num_train_epochs,
        max_steps=cfg.optimizer.max_steps if cfg.optimizer.max_steps is not None else -1,
        learning_rate=cfg.optimizer.learning_rate,
        lr_scheduler_type=cfg.optimizer.lr_scheduler_type,
        warmup_steps=cfg.optimizer.warmup_steps,
        per_device_train_batch_size=per_device or cfg.optimizer.per_device_train_batch_size,
        gradient_accumulation_steps=accumulation or cfg.optimizer.gradient_accumulation_steps,  # see .batch
        weight_decay=cfg.optimizer.weight_decay,
        max_grad_norm=cfg.optimizer.max_grad_norm,
        optim=_optim(cfg, device),
        max_length=cfg.data.max_length,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",  # transformers refuses bf16 on CPU unless told the run is on CPU
        **{checkpointing_field: checkpointing},
        seed=cfg.runtime.seed,
        data_seed=cfg.runtime.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.runtime.save_steps,
        save_total_limit=cfg.runtime.save_total_limit,
        report_to=cfg.runtime.report_to,
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        dataloader_pin_memory=device == "cuda",
    )


@dataclasses.dataclass
class Setup:
    """What a run resolved before reading data: its config (chat template date pinned), output folder,
    process layout, student and tokenizer."""

    config: TrainConfig
    out: Path
    started: float  # time.monotonic() at the start
    main: bool  # the process that writes the files
    gpus: Any  # devices.GpuPlan
    batch: Any  # batch.BatchPlan: the global batch kept over the processes
    student: Any  # students.Student
    tokenizer: Any


@dataclasses.dataclass
class Data:
    """The rows that are trained on: tokenised, with the preflight report."""

    file_rows: int  # rows in the train file
    kept: list[Tokenized]
    preflight: Preflight


@dataclasses.dataclass
class Model:
    """The student wrapped with LoRA and how it runs: device, precision, memory plan, loss."""

    model: Any
    targets: list[str]  # module names LoRA adapted
    trainable: int
    total: int
    device: str
    precision: str
    checkpointing: bool
    threads: int | None
    calibration: Any  # calibration.Calibration of an auto precision on CPU, else None
    plain_loss: bool
    head_on_completion: bool
    memory_plan: Any  # memory.Plan
    memory: dict  # the plan as recorded (memory_plan.json)
    attention: str = "sdpa"  # the attention implementation training runs (transformers' name)
    attention_reason: str = "the student's default"
    returns_freed_memory: bool = False  # CPU: fixed mmap threshold applied, heap trimmed after each micro-batch
    frozen_weights: str | None = None  # how the frozen base weights are stored, when not as loaded


@dataclasses.dataclass
class Fit:
    """What the training loop did."""

    trainer: Any
    args: Any  # trl.SFTConfig
    resumed_from: str | None  # the checkpoint it resumed from
    metrics: dict
    seconds: float
    rss_before_gb: float


def train(config: TrainConfig, *, log=print) -> Path:
    """Fine-tune ``config.model.student`` with LoRA on ``config.paths.train_file``; return the adapter folder.

    The steps, in order: :func:`setup`, :func:`load_data`, the output folder's check (a resume, or a run
    already finished with these settings), :func:`start_output`, :func:`load_model`, :func:`fit`, :func:`save`.
    """
    run = setup(config, log)
    data = load_data(run)
    resume_from = _check_resume(run.config, run.out)  # the last complete checkpoint; a foreign folder is refused
    if _already_trained(run, log):
        return run.out
    start_output(run, data, resume_from, log)
    model = load_model(run, data, resume_from, log)
    done = fit(run, data, model, resume_from)
    save(run, data, model, done, log)
    return run.out


def setup(config: TrainConfig, log=print) -> Setup:
    """Devices (before anything starts CUDA), the global batch over processes, determinism, the student's
    tokenizer and its chat template's date pinned into the config."""
    runtime.quiet_libraries()
    started = time.monotonic()
    gpus = devices.select_training_device(config.compute.device, log=log)  # before anything starts CUDA
    batch = keep_global_batch(config.optimizer.per_device_train_batch_size,
                              config.optimizer.gradient_accumulation_steps, devices.world_size())
    if batch.accumulation != config.optimizer.gradient_accumulation_steps:
        log(f"{batch.world_size} processes: gradient accumulation {config.optimizer.gradient_accumulation_steps} -> "
            f"{batch.accumulation} per process, keeping the global batch of {batch.global_batch}")
    if config.compute.deterministic:
        devices.enable_determinism()
    main = _main_process()
    student = students.resolve(config.model.student)
    tokenizer = students.load_tokenizer(student)
    pinned = students.pin_template_kwargs(tokenizer.chat_template, config.model.chat_template_kwargs)
    if pinned != config.model.chat_template_kwargs:  # in train_config.json and the manifest; generate reuses it
        config = dataclasses.replace(config, chat_template_kwargs=pinned)
        log(f"the chat template stamps a date: pinned to date_string={pinned['date_string']!r}")
    return Setup(config, Path(config.paths.output_dir), started, main, gpus, batch, student, tokenizer)


def load_data(run: Setup) -> Data:
    """Read the train file, take the configured subset, tokenise and check every row (the preflight)."""
    cfg = run.config
    all_rows = runtime.read_rows(cfg.paths.train_file)
    rows = runtime.subset(all_rows, cfg.data.max_examples, cfg.runtime.seed)
    kept, report = preflight(rows, run.tokenizer, cfg.data.max_length, path=cfg.paths.train_file,
                             drop=cfg.data.drop_overlong, chat_template_kwargs=cfg.model.chat_template_kwargs)
    return Data(len(all_rows), kept, report)


def _already_trained(run: Setup, log=print) -> bool:
    """Whether ``--resume`` finds the folder finished with these settings (then there is nothing to do)."""
    cfg, out = run.config, run.out
    if not (cfg.runtime.resume and (out / "manifest.json").exists()):
        return False
    done = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    saved = done.get("config") or {}
    # every setting that run recorded must be the same now (resume aside); settings newer than it are not compared
    recorded = {k: v for k, v in saved.items() if k not in ALREADY_TRAINED_MAY_CHANGE}
    if saved and not Fingerprint.of(to_dict(cfg), ignore=ALREADY_TRAINED_MAY_CHANGE).changes(recorded, removed=True):
        log(f"{out} is already trained with these settings; nothing to do")
        return True
    return False


def start_output(run: Setup, data: Data, resume_from: str | None, log=print) -> None:
    """The main process writes the preflight report and the config into the output folder; a resumed run's
    step log is cut back to the checkpoint, a fresh run's removed."""
    cfg, out = run.config, run.out
    if run.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "preflight.json", data.preflight.to_dict())
        if not (out / "train_config.json").exists() or resume_from is None:
            write_json(out / "train_config.json", to_dict(cfg))
        if resume_from is None:
            (out / LOG_NAME).unlink(missing_ok=True)
        else:
            state = json.loads((Path(resume_from) / "trainer_state.json").read_text(encoding="utf-8"))
            _truncate_log(out / LOG_NAME, int(state["global_step"]))
            log(f"resuming from {resume_from} (step {state['global_step']})")
    if data.preflight.dropped:
        log(f"preflight: dropped {data.preflight.dropped} row(s) (see {out / 'preflight.json'})")


def _casts_frozen_weights(cfg: TrainConfig) -> bool:
    """Whether bf16 on CPU stores the frozen projections in bf16 (:mod:`.weights`)."""
    return cfg.compute.cast_frozen_weights and not cfg.model.qlora


def load_model(run: Setup, data: Data, resume_from: str | None, log=print) -> Model:
    """The memory plan (before the model loads: a row that cannot fit even alone is an error now), the
    precision (measured on CPU for ``auto``) and the student wrapped with LoRA."""
    import transformers

    cfg = run.config
    device = runtime.device()
    plain_loss = cfg.compute.loss_implementation in ("model", "completion-head") or (
        cfg.compute.loss_implementation == "auto" and (device != "cuda" or importlib.util.find_spec("triton") is None))
    head_on_completion = plain_loss and cfg.compute.loss_implementation != "model"
    plan_args = (cfg, run.out, resume_from, run.student, data.kept, device, run.batch.accumulation,
                 head_on_completion, log)
    mem_plan, mem_saved = _memory_plan(*plan_args, eager_attention=cfg.compute.attention in attn.KEEPS_PROBABILITIES)
    # attention auto on CPU: the calibration may pick eager attention, if its probabilities leave the plan as it is
    measure_attention, eager_plan = cfg.compute.attention, None
    if device == "cpu" and cfg.compute.precision == "auto" and cfg.compute.attention == "auto":
        eager_plan = _memory_plan(*plan_args, eager_attention=True, record=False)
        if not _runs_alike(eager_plan[1], mem_saved):
            measure_attention = "sdpa"
            log("attention auto: sdpa (eager attention's per-layer probabilities would change the memory plan: "
                f"{eager_plan[0].reason})")
    checkpointing = mem_plan.gradient_checkpointing
    returns_freed = device == "cpu" and cfg.compute.return_freed_memory and memory.return_freed_memory_to_os()
    threads = runtime.use_physical_cores() if device == "cpu" else None
    precision = runtime.precision(cfg.compute.precision, device)
    transformers.set_seed(cfg.runtime.seed)  # before PEFT draws the LoRA initialisation
    model, targets = _peft_model(cfg, run.student, device, precision, checkpointing, log)
    trainable, total = model.get_nb_trainable_parameters()
    cal = None
    if device == "cpu" and cfg.compute.precision == "auto":
        cal = _calibration(run.out, resume_from, model, cfg.model.student, data.kept,
                           head_on_completion and supports(model), rows=mem_plan.per_device_train_batch_size,
                           bf16_weights=_casts_frozen_weights(cfg), attention=measure_attention)
        drop_weight_casts(model)  # the LM head's bf16 copy from the bf16 passes: a bf16 training makes its own
        precision = runtime.precision(cfg.compute.precision, device, cpu_measured=cal.precision)
        log(f"precision auto: {precision} ({cal.reason}: fp32 {cal.fp32_tokens_per_s:.0f} vs bf16 "
            f"{cal.bf16_tokens_per_s:.0f} tok/s on {cal.cpu_model}; calibration of {cal.measured_at} took "
            f"{cal.seconds:.2f} s)")
        if cal.starved:
            log(f"warning: other processes took {cal.others_cpu_share:.0%} of the CPUs while the calibration "
                "measured: its choice serves this run but is not cached (measured again next time)")
    attention, attention_reason = attn.current(model), "the student's default"
    if cal is not None and cal.attention:
        attention, attention_reason = cal.attention, cal.attention_reason
    elif cfg.compute.attention != "auto":
        attention, attention_reason = cfg.compute.attention, "requested"
    if attention != attn.current(model):
        attn.use(model, attention)
        log(f"attention: {attention} ({attention_reason})")
    if attention in attn.KEEPS_PROBABILITIES and eager_plan is not None:  # the plan as it runs: probabilities counted
        mem_plan, mem_saved = eager_plan
        if _main_process():
            write_json(run.out / "memory_plan.json", mem_saved)
    if head_on_completion and not supports(model):
        if cfg.compute.loss_implementation == "completion-head":
            raise ConfigError(f"loss_implementation completion-head does not support student {cfg.model.student!r} "
                              "(logit soft-capping/scaling or an unusual layout); use auto or model")
        head_on_completion = False
    frozen = None
    if device == "cpu" and precision == "bf16" and _casts_frozen_weights(cfg):
        import torch

        cast = cast_frozen_linears(model, torch.bfloat16)
        owned = own_frozen_weights(model)
        frozen = f"{cast} frozen projections stored in bf16 (cast once, not by autocast per forward)"
        log(f"{frozen}; {owned / 1e6:.0f} MB of other frozen weights copied out of the checkpoint's mapping")
    return Model(model, targets, trainable, total, device, precision, checkpointing, threads, cal, plain_loss,
                 head_on_completion, mem_plan, mem_saved, attention, attention_reason, returns_freed, frozen)


def fit(run: Setup, data: Data, model: Model, resume_from: str | None) -> Fit:
    """The training loop: TRL's trainer over the tokenised rows, logging every step's rows to train_log.jsonl,
    resuming from the last checkpoint when there is one; the adapter is saved into the output folder."""
    from datasets import Dataset
    from transformers import ProgressCallback
    from transformers.trainer_callback import PrinterCallback

    cfg, out, kept = run.config, run.out, data.kept
    dataset = Dataset.from_dict({
        "input_ids": [t.input_ids for t in kept],
        "labels": [t.labels for t in kept],
        "row_index": list(range(len(kept))),
    })
    args = _sft_config(cfg, out, model.device, model.precision, model.checkpointing,
                       accumulation=model.memory_plan.gradient_accumulation_steps,
                       per_device=model.memory_plan.per_device_train_batch_size)
    devices.check_single_process_gpus(args.n_gpu, run.gpus.world_size)
    Trainer = _make_trainer_class(model.plain_loss, model.head_on_completion, cfg.compute.micro_batches_by_length,
                                  model.memory_plan, trim_heap=model.returns_freed_memory)
    trainer = Trainer(model=model.model, args=args, train_dataset=dataset, processing_class=run.tokenizer,
                      data_collator=_collator(run.tokenizer.pad_token_id))
    trainer.tracekd_row_ids = [t.id for t in kept]
    trainer.tracekd_features = [{"input_ids": t.input_ids, "labels": t.labels, "row_index": i}
                                for i, t in enumerate(kept)]
    trainer.tracekd_ids = []
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if cfg.runtime.progress:
        trainer.add_callback(_progress_callback())
    appender = JsonlAppender(out / LOG_NAME) if run.main else None
    trainer.tracekd_log = appender
    rss_before = memory.current_rss()
    started = time.monotonic()
    try:
        result = trainer.train(resume_from_checkpoint=resume_from)
    finally:
        if appender is not None:
            appender.close()
    seconds = time.monotonic() - started
    trainer.save_model(str(out))
    return Fit(trainer, args, resume_from, result.metrics, seconds, round(rss_before / 1024 ** 3, 3))


def save(run: Setup, data: Data, model: Model, done: Fit, log=print) -> None:
    """The manifest (main process), then CUDA's cache emptied."""
    import torch

    if run.main:
        m = _train_manifest(run, data, model, done, students.weight_hashes(run.student))
        write_json(run.out / "manifest.json", m)
        log(f"trained {done.trainer.state.global_step} steps in {done.seconds:.0f} s "
            f"(final loss {m['loss_curve'][-1][1] if m['loss_curve'] else float('nan'):.4f}); adapter: {run.out}")
    if model.device == "cuda":
        torch.cuda.empty_cache()


def _dropout_masks(model) -> str:
    """How the LoRA dropout masks were drawn (for the manifest)."""
    from .dropout import BitDropout

    bits = [m for m in model.modules() if isinstance(m, BitDropout)]
    if bits:
        return f"16-bit random words (BitDropout, {len(bits)} modules), effective p {bits[0].effective_p:.7f}"
    return "torch.nn.Dropout"


def _train_manifest(run: Setup, data: Data, model: Model, done: Fit, weights: dict) -> dict:
    cfg, out, args, state = run.config, run.out, done.args, done.trainer.state
    curve = [[o["step"], o["loss"]] for _, o in iter_jsonl(out / LOG_NAME)] if (out / LOG_NAME).exists() else []
    tokens = int(state.num_input_tokens_seen or 0)
    report, cal = data.preflight, model.calibration
    return manifest(
        kind="train",
        config=to_dict(cfg),
        seed=cfg.runtime.seed,
        files={"train_file": sha256_file(cfg.paths.train_file)},
        student={**run.student.describe(), "weights_sha256": weights},
        lora={"r": cfg.model.lora_r, "alpha": cfg.model.lora_alpha, "dropout": cfg.model.lora_dropout,
              "dropout_masks": _dropout_masks(model.model),
              "target_modules_requested": list(cfg.model.lora_target_modules), "target_modules_resolved": model.targets,
              "trainable_parameters": model.trainable, "all_parameters": model.total, "qlora": cfg.model.qlora},
        resolved={"device": model.device, "precision": model.precision,
                  "gradient_checkpointing": model.checkpointing, "optim": args.optim,
                  "effective_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps
                  * max(1, args.world_size), "world_size": args.world_size, "max_steps": state.max_steps,
                  "gradient_accumulation_steps": args.gradient_accumulation_steps,
                  "loss": "completion tokens only (prompt tokens labelled -100)",
                  "loss_implementation": ("LM head on completion positions only (tracekd.train.loss)"
                                          if model.head_on_completion else "transformers cross-entropy"
                                          if model.plain_loss else "TRL fused LM head"),
                  "precision_source": ("requested" if cfg.compute.precision != "auto" else "measured" if cal is not None
                                       else "device support"),
                  "calibration": cal.to_dict() if cal is not None else None, "torch_threads": model.threads,
                  "attention": model.attention, "attention_reason": model.attention_reason,
                  "frozen_weights": model.frozen_weights or "as loaded",
                  "return_freed_memory": model.returns_freed_memory},
        data={"file_rows": data.file_rows, "subset_rows": report.rows, "trained_rows": len(data.kept),
              "dropped_rows": report.dropped, "trainable_tokens": report.trainable_tokens,
              "max_length": cfg.data.max_length, "longest_row_tokens": report.longest},
        timing={"train_seconds": round(done.seconds, 2),
                "total_seconds": round(time.monotonic() - run.started, 2),
                "tokens_seen": tokens, "tokens_per_second": round(tokens / done.seconds, 2) if done.seconds else None,
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 3),
                "trainer_metrics": {k: v for k, v in done.metrics.items() if isinstance(v, (int, float))}},
        memory={**model.memory, "rss_before_train_gb": done.rss_before_gb,
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 3)},
        resumed_from=done.resumed_from,
        global_step=state.global_step,
        loss_curve=curve,
    )


def train_from_settings(settings: dict[str, Any], **fields: Any) -> Path:
    """Train from a settings dict (e.g. an experiment's ``train:`` block) plus fields given by the caller.

    Resumes an interrupted run in ``output_dir`` unless ``settings`` says ``resume: false``.
    """
    merged = {"resume": True, **dict(settings or {}), **{k: (str(v) if isinstance(v, Path) else v)
                                                          for k, v in fields.items()}}
    return train(load_config(TrainConfig, merged))
