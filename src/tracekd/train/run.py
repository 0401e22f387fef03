"""``train(config)``: LoRA / QLoRA fine-tuning with TRL's ``SFTTrainer``, resumable and recorded.

Output folder (``config.output_dir``)::

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
import resource
import time
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..errors import ConfigError
from ..io import JsonlAppender, iter_jsonl, manifest, sha256_file, write_json, write_text
from .config import TrainConfig
from .batch import keep_global_batch
from .data import Preflight, Tokenized, preflight, read_rows, subset

#: config fields a resumed run may change without changing what is trained
RESUME_MAY_CHANGE = {"resume", "progress", "save_steps", "save_total_limit", "max_steps", "output_dir", "report_to",
                     "device", "deterministic"}

LOG_NAME = "train_log.jsonl"


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars and deprecation chatter (tracekd shows its own progress)."""
    import warnings

    import datasets
    import transformers

    datasets.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)(\.|$)")


def _main_process() -> bool:
    import os

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
    import re
    import shutil

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
    if not cfg.resume:
        if last_complete_checkpoint(ckpt_dir, cleanup=False) or (out / "manifest.json").exists():
            raise ConfigError(f"{out} holds an earlier training run; pass --resume to continue it, "
                              "or choose another --output-dir")
        return None
    if saved_path.exists():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        now = to_dict(cfg)
        # a setting missing from the saved file is newer than that run: not a difference
        diff = [k for k in now if k not in RESUME_MAY_CHANGE and k in saved and saved[k] != now[k]]
        if diff:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
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


def _make_trainer_class(plain_loss: bool = False, head_on_completion: bool = False, by_length: bool = False):
    """SFTTrainer that records which rows made each optimizer step and logs every step to JSONL.

    With ``plain_loss`` the loss is the model's own cross-entropy on the (completion-only) labels,
    as in ``transformers.Trainer``, instead of TRL's fused LM-head kernel: without Triton (on CPU)
    that kernel falls back to a PyTorch loop that made smollm2-135m steps 2.3x slower here, for
    the same loss values. With ``head_on_completion`` too, the LM head runs only on the positions
    that carry a loss (:mod:`.loss`): same value and gradients, a fraction of the logits' memory.
    With ``by_length`` each optimizer step's rows are regrouped into micro-batches of similar length
    (:func:`.batch.regroup_step`; needs ``tracekd_features``).
    """
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
                from .batch import regroup_step

                batches = regroup_step(batches, self.tracekd_features, self.data_collator)
            return batches, num_items

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if head_on_completion and not return_outputs and "labels" in inputs:
                from .loss import completion_loss

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
            idx = inputs.pop("row_index", None)
            if idx is not None:
                self.tracekd_ids.extend(self.tracekd_row_ids[i] for i in idx.tolist())
            return super().training_step(model, inputs, *args, **kwargs)

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
    from tqdm.auto import tqdm
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


def _quantization(cfg: TrainConfig, dev: str, prec: str = "bf16"):
    if not cfg.qlora:
        return None
    if dev != "cuda":
        raise ConfigError("--qlora (4-bit NF4 through bitsandbytes) needs a CUDA GPU, and this machine has none; "
                          "train with plain LoRA (leave out --qlora)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("--qlora needs bitsandbytes: pip install 'tracekd[qlora]'")
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.float16 if prec == "fp16" else torch.bfloat16)


def _optim(cfg: TrainConfig, dev: str) -> str:
    if cfg.optim != "auto":
        return cfg.optim
    if dev == "cuda" and importlib.util.find_spec("bitsandbytes") is not None:
        return "paged_adamw_8bit"
    return "adamw_torch"


def _peft_model(cfg: TrainConfig, student, dev: str, prec: str, gc: bool, log):
    """The student (4-bit for QLoRA) wrapped with the LoRA adapter, and the module names adapted."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from .. import students
    from . import hardware

    quant = _quantization(cfg, dev, prec)
    device_map = None
    if quant is not None:
        from accelerate import PartialState

        device_map = {"": PartialState().local_process_index}
    # on CPU the weights stay float32 and bf16 means autocast (what the calibration measured)
    weights = "fp32" if dev == "cpu" or prec == "fp16" else prec
    model = students.load_model(student, dtype=hardware.torch_dtype(weights),
                                quantization_config=quant, device_map=device_map)
    model.config.use_cache = False
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      task_type="CAUSAL_LM",
                      target_modules=("all-linear" if cfg.lora_target_modules == ["all-linear"]
                                      else list(cfg.lora_target_modules)))
    try:
        model = get_peft_model(model, lora)
    except ValueError as e:
        raise ConfigError(f"LoRA target modules {cfg.lora_target_modules} do not fit student {cfg.student!r}: {e}") \
            from None
    targets = _resolved_targets(model)
    missing = [t for t in cfg.lora_target_modules if t != "all-linear" and t not in targets]
    if missing:
        log(f"warning: student {cfg.student!r} has no module named {', '.join(missing)}; adapted: {targets}")
    return model, targets


def _calibration(out: Path, last_ckpt: str | None, model, student_name: str, kept: list[Tokenized],
                 head_on_completion: bool = False):
    """The precision calibration of this run: a resumed run keeps the one it started with (same format, same bytes).

    The probe uses training's loss (the LM head on completion positions when training does).
    """
    from .calibration import Calibration, calibrate_training
    from .loss import completion_loss

    path = out / "calibration.json"
    if last_ckpt is not None and path.is_file():
        try:
            return Calibration(**json.loads(path.read_text(encoding="utf-8")))
        except (TypeError, ValueError):
            pass
    cal = calibrate_training(model, student_name, [len(t.input_ids) for t in kept],
                             loss=completion_loss if head_on_completion else None)
    if _main_process():
        write_json(path, cal.to_dict())
    return cal


def _memory_plan(cfg: TrainConfig, out: Path, last_ckpt: str | None, student, kept: list[Tokenized], dev: str,
                 accumulation: int, head_on_completion: bool, log):
    """Micro-batch size, accumulation and checkpointing that fit ``cfg.max_memory`` (a resumed run keeps its plan)."""
    from . import memory

    path = out / "memory_plan.json"
    if last_ckpt is not None and path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return memory.Plan(saved["per_device_train_batch_size"], saved["gradient_accumulation_steps"],
                           saved["gradient_checkpointing"], None, None, "kept from the interrupted run"), saved
    shape = memory.Shape.from_folder(student.source) if Path(student.source).is_dir() else None
    gc = cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else (True if dev == "cuda" else None)
    longest = max(kept, key=lambda t: len(t.input_ids))
    plan = memory.plan(shape, [(len(t.input_ids), t.trainable) for t in kept],
                       batch_size=cfg.per_device_train_batch_size, grad_accum=accumulation,
                       budget_bytes=memory.budget(cfg.max_memory, dev),
                       trainable_params=memory.lora_parameters(shape, cfg.lora_r, cfg.lora_target_modules)
                       if shape else 0,
                       checkpointing=gc, head_on_completion=head_on_completion,
                       longest_id=f"{longest.id}, line {longest.line}")
    if plan.per_device_train_batch_size != cfg.per_device_train_batch_size or (
            plan.gradient_checkpointing and not gc):
        log(f"max_memory {cfg.max_memory}: {plan.reason}")
    saved = plan.to_dict()
    if _main_process():
        write_json(path, saved)
    return plan, saved


def _sft_config(cfg: TrainConfig, out: Path, dev: str, prec: str, gc: bool, accumulation: int | None = None,
                per_device: int | None = None):
    """TRL's ``SFTConfig`` for this run: rows come tokenised, every step is logged, checkpoints in out/checkpoints."""
    from trl import SFTConfig

    ckpt_field = ("activation_checkpointing" if "activation_checkpointing" in
                  {f.name for f in dataclasses.fields(SFTConfig)} else "gradient_checkpointing")
    return SFTConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        per_device_train_batch_size=per_device or cfg.per_device_train_batch_size,
        gradient_accumulation_steps=accumulation or cfg.gradient_accumulation_steps,  # see .batch
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=_optim(cfg, dev),
        max_length=cfg.max_length,
        bf16=prec == "bf16",
        fp16=prec == "fp16",
        use_cpu=dev == "cpu",  # transformers refuses bf16 on CPU unless told the run is on CPU
        **{ckpt_field: gc},
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=cfg.report_to,
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        dataloader_pin_memory=dev == "cuda",
    )


def train(config: TrainConfig, *, log=print) -> Path:
    """Fine-tune ``config.student`` with LoRA on ``config.train_file``; return the adapter folder."""
    import torch
    import transformers
    from datasets import Dataset
    from transformers import ProgressCallback
    from transformers.trainer_callback import PrinterCallback

    from .. import students
    from . import hardware

    quiet_libraries()
    cfg = config
    out = Path(cfg.output_dir)
    t_start = time.monotonic()
    from .. import devices

    gpus = devices.select_training_device(cfg.device, log=log)  # before anything starts CUDA
    batch = keep_global_batch(cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps, devices.world_size())
    if batch.accumulation != cfg.gradient_accumulation_steps:
        log(f"{batch.world_size} processes: gradient accumulation {cfg.gradient_accumulation_steps} -> "
            f"{batch.accumulation} per process, keeping the global batch of {batch.global_batch}")
    if cfg.deterministic:
        devices.enable_determinism()
    main = _main_process()

    # data and tokenizer
    student = students.resolve(cfg.student)
    tokenizer = students.load_tokenizer(student)
    ctk = students.pin_template_kwargs(tokenizer.chat_template, cfg.chat_template_kwargs)
    if ctk != cfg.chat_template_kwargs:  # recorded in train_config.json and the manifest; generate reuses it
        cfg = dataclasses.replace(cfg, chat_template_kwargs=ctk)
        log(f"the chat template stamps a date: pinned to date_string={ctk['date_string']!r}")
    all_rows = read_rows(cfg.train_file)
    rows = subset(all_rows, cfg.max_examples, cfg.seed)
    kept, report = preflight(rows, tokenizer, cfg.max_length, path=cfg.train_file, drop=cfg.drop_overlong,
                             chat_template_kwargs=cfg.chat_template_kwargs)

    # resume or fresh start
    last_ckpt = _check_resume(cfg, out)
    if cfg.resume and (out / "manifest.json").exists():
        done = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        saved = done.get("config") or {}
        now = to_dict(cfg) | {"resume": saved.get("resume")}  # settings newer than that run are not compared
        if saved and all(k in now and now[k] == v for k, v in saved.items()):
            log(f"{out} is already trained with these settings; nothing to do")
            return out
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "preflight.json", report.to_dict())
        if not (out / "train_config.json").exists() or last_ckpt is None:
            write_json(out / "train_config.json", to_dict(cfg))
        if last_ckpt is None:
            (out / LOG_NAME).unlink(missing_ok=True)
        else:
            state = json.loads((Path(last_ckpt) / "trainer_state.json").read_text(encoding="utf-8"))
            _truncate_log(out / LOG_NAME, int(state["global_step"]))
            log(f"resuming from {last_ckpt} (step {state['global_step']})")
    if report.dropped:
        log(f"preflight: dropped {report.dropped} row(s) (see {out / 'preflight.json'})")

    # memory budget, planned before the model loads (a row that cannot fit even alone is an error now)
    dev = hardware.device()
    plain_loss = cfg.loss_implementation in ("model", "completion-head") or (
        cfg.loss_implementation == "auto" and (dev != "cuda" or importlib.util.find_spec("triton") is None))
    head_on_completion = plain_loss and cfg.loss_implementation != "model"
    mem_plan, mem_saved = _memory_plan(cfg, out, last_ckpt, student, kept, dev, batch.accumulation,
                                       head_on_completion, log)
    gc = mem_plan.gradient_checkpointing

    # model
    if dev == "cpu":
        from .memory import return_freed_memory_to_os

        return_freed_memory_to_os()
    threads = hardware.use_physical_cores() if dev == "cpu" else None
    prec = hardware.precision(cfg.precision, dev)
    transformers.set_seed(cfg.seed)  # before PEFT draws the LoRA initialisation
    model, targets = _peft_model(cfg, student, dev, prec, gc, log)
    trainable, total = model.get_nb_trainable_parameters()
    cal = None
    if dev == "cpu" and cfg.precision == "auto":
        from .loss import supports

        cal = _calibration(out, last_ckpt, model, cfg.student, kept, head_on_completion and supports(model))
        prec = hardware.precision(cfg.precision, dev, cpu_measured=cal.precision)
        log(f"precision auto: {prec} ({cal.reason}: fp32 {cal.fp32_tokens_per_s:.0f} vs bf16 "
            f"{cal.bf16_tokens_per_s:.0f} tok/s on {cal.cpu_model}; calibration of {cal.measured_at} took "
            f"{cal.seconds:.2f} s)")

    dataset = Dataset.from_dict({
        "input_ids": [t.input_ids for t in kept],
        "labels": [t.labels for t in kept],
        "row_index": list(range(len(kept))),
    })
    args = _sft_config(cfg, out, dev, prec, gc, accumulation=mem_plan.gradient_accumulation_steps,
                       per_device=mem_plan.per_device_train_batch_size)
    devices.check_single_process_gpus(args.n_gpu, gpus.world_size)
    from .loss import supports

    if head_on_completion and not supports(model):
        if cfg.loss_implementation == "completion-head":
            raise ConfigError(f"loss_implementation completion-head does not support student {cfg.student!r} "
                              "(logit soft-capping/scaling or an unusual layout); use auto or model")
        head_on_completion = False
    Trainer = _make_trainer_class(plain_loss, head_on_completion, cfg.micro_batches_by_length)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      data_collator=_collator(tokenizer.pad_token_id))
    trainer.tracekd_row_ids = [t.id for t in kept]
    trainer.tracekd_features = [{"input_ids": t.input_ids, "labels": t.labels, "row_index": i}
                                for i, t in enumerate(kept)]
    trainer.tracekd_ids = []
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if cfg.progress:
        trainer.add_callback(_progress_callback())

    appender = JsonlAppender(out / LOG_NAME) if main else None
    trainer.tracekd_log = appender
    from .memory import current_rss

    rss_before_train = current_rss()
    t_train = time.monotonic()
    try:
        result = trainer.train(resume_from_checkpoint=last_ckpt)
    finally:
        if appender is not None:
            appender.close()
    train_seconds = time.monotonic() - t_train
    trainer.save_model(str(out))

    if main:
        m = _manifest(cfg, student, students.weight_hashes(student), targets, trainable, total, prec, gc, dev, args,
                      report, kept, len(all_rows), out, result.metrics, trainer.state, train_seconds,
                      time.monotonic() - t_start, last_ckpt, plain_loss, head_on_completion, cal, threads,
                      {**mem_saved, "rss_before_train_gb": round(rss_before_train / 1024 ** 3, 3)})
        write_json(out / "manifest.json", m)
        log(f"trained {trainer.state.global_step} steps in {train_seconds:.0f} s "
            f"(final loss {m['loss_curve'][-1][1] if m['loss_curve'] else float('nan'):.4f}); adapter: {out}")
    if dev == "cuda":
        torch.cuda.empty_cache()
    return out


def _manifest(cfg: TrainConfig, student, weights: dict, targets: list[str], trainable: int, total: int, prec: str,
              gc: bool, dev: str, args, report: Preflight, kept: list[Tokenized], n_file_rows: int, out: Path,
              metrics: dict, state, train_seconds: float, total_seconds: float, resumed_from: str | None,
              plain_loss: bool, head_on_completion: bool = False, cal=None, threads: int | None = None,
              memory_plan: dict | None = None) -> dict:
    curve = [[o["step"], o["loss"]] for _, o in iter_jsonl(out / LOG_NAME)] if (out / LOG_NAME).exists() else []
    tokens = int(state.num_input_tokens_seen or 0)
    return manifest(
        kind="train",
        config=to_dict(cfg),
        seed=cfg.seed,
        files={"train_file": sha256_file(cfg.train_file)},
        student={**student.describe(), "weights_sha256": weights},
        lora={"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout,
              "target_modules_requested": list(cfg.lora_target_modules), "target_modules_resolved": targets,
              "trainable_parameters": trainable, "all_parameters": total, "qlora": cfg.qlora},
        resolved={"device": dev, "precision": prec, "gradient_checkpointing": gc, "optim": args.optim,
                  "effective_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps
                  * max(1, args.world_size), "world_size": args.world_size, "max_steps": state.max_steps,
                  "gradient_accumulation_steps": args.gradient_accumulation_steps,
                  "loss": "completion tokens only (prompt tokens labelled -100)",
                  "loss_implementation": ("LM head on completion positions only (tracekd.train.loss)"
                                          if head_on_completion else "transformers cross-entropy" if plain_loss
                                          else "TRL fused LM head"),
                  "precision_source": ("requested" if cfg.precision != "auto" else "measured" if cal is not None
                                       else "device support"),
                  "calibration": cal.to_dict() if cal is not None else None, "torch_threads": threads},
        data={"file_rows": n_file_rows, "subset_rows": report.rows, "trained_rows": len(kept),
              "dropped_rows": report.dropped, "trainable_tokens": report.trainable_tokens,
              "max_length": cfg.max_length, "longest_row_tokens": report.longest},
        timing={"train_seconds": round(train_seconds, 2), "total_seconds": round(total_seconds, 2),
                "tokens_seen": tokens, "tokens_per_second": round(tokens / train_seconds, 2) if train_seconds else None,
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 3),
                "trainer_metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}},
        memory={**(memory_plan or {}),
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 3)},
        resumed_from=resumed_from,
        global_step=state.global_step,
        loss_curve=curve,
    )


def train_from_settings(settings: dict[str, Any], **fields: Any) -> Path:
    """Train from a settings dict (e.g. an experiment's ``train:`` block) plus fields given by the caller.

    Resumes an interrupted run in ``output_dir`` unless ``settings`` says ``resume: false``.
    """
    from ..config import load_config

    merged = {"resume": True, **dict(settings or {}), **{k: (str(v) if isinstance(v, Path) else v)
                                                          for k, v in fields.items()}}
    return train(load_config(TrainConfig, merged))
