"""Official chat templates (Qwen3, Llama-3.2, as TRL ships them) rendered offline with the default student's
tokenizer: the training context must be the generation prompt token for token, and the date must not move."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from tracekd import students
from tracekd.errors import DataError
from tracekd.io import write_jsonl
from tracekd.records import Decomposition, Example, SFTRow
from tracekd.runtime import prompt_ids, read_rows
from tracekd.traces.parse import parse
from tracekd.traces.templates import get_template, render_row
from tracekd.train.data import IGNORE_INDEX, preflight, tokenize_row

trl = pytest.importorskip("trl")
TEMPLATES = Path(trl.__file__).parent / "chat_templates"

CONTEXT = ("Mary moved to the bathroom.", "John went to the hallway.", "Mary travelled to the office.")
TEACHER_REASONING = ("Okay, let me look at the context.\n\nFirst, Mary moved to the bathroom. Then John went to the "
                     "hallway, which is about John.\n\nThe last thing about Mary: she travelled to the office.\n"
                     "So Mary is in the office.")


def arm_rows() -> list[SFTRow]:
    """One question on the trace arms (correct, incorrect), the vanilla arm and a teacher-style arm."""
    ex = Example("babi/qa1/0", "babi", "train", "Where is Mary?", CONTEXT, ("office",),
                 Decomposition("single-supporting-fact", (2,)))
    t = get_template("reference-qa")
    rows = [render_row(ex, "vanilla", None, t), render_row(ex, "correct", ex.gold, t),
            render_row(ex, "incorrect", Decomposition("two-arg-relations", (1,)), t)]
    teacher = SFTRow(id=ex.id, arm="teacher-trace", prompt=rows[0].prompt,
                     completion=({"role": "assistant",
                                  "content": f"<think>{TEACHER_REASONING}</think> <answer>office</answer>"},))
    return rows + [teacher]


def tokenizer_with(template: str):
    tok = students.load_tokenizer(students.resolve("tiny-random"))  # the default student's tokenizer
    tok.chat_template = (TEMPLATES / template).read_text(encoding="utf-8")
    return tok


def write_arm(tmp_path: Path, row: SFTRow, n: int = 3) -> Path:
    path = tmp_path / f"{row.arm}.jsonl"
    write_jsonl(path, [{**row.to_dict(), "id": f"{row.id}/{i}"} for i in range(n)])
    return path


@pytest.mark.parametrize("template", ["qwen3.jinja", "llama3_2.jinja"])
def test_every_arm_trains_on_exactly_the_generation_prompt(template, tmp_path):
    tok = tokenizer_with(template)
    ctk = students.pin_template_kwargs(tok.chat_template, {})
    for row in arm_rows():
        path = write_arm(tmp_path, row)
        kept, report = preflight(read_rows(path), tok, 1024, path=path, chat_template_kwargs=ctk)
        assert report.rows == 3 and len(kept) == 3
        ids, labels = tokenize_row(tok, row, ctk)
        gen = prompt_ids(tok, row.prompt, ctk)  # what `tracekd generate` feeds the model
        assert ids[:len(gen)] == gen, f"{template} {row.arm}: training context != generation prompt"
        assert labels[:len(gen)] == [IGNORE_INDEX] * len(gen) and IGNORE_INDEX not in labels[len(gen):]
        target = tok.decode(ids[len(gen):], skip_special_tokens=True)
        # what the student learns to write still parses as the arm's trace and answer
        parsed = parse(target.replace("<|eot_id|>", ""), "reference-qa")
        assert parsed.answer == "office", (template, row.arm, target)
        if row.arm in ("correct", "incorrect"):
            assert parsed.status == "ok" and parsed.label == row.target.label
            assert list(parsed.evidence) == [CONTEXT[i] for i in row.target.evidence]
        if row.arm == "teacher-trace":
            assert "So Mary is in the office." in target


def test_qwen3_enable_thinking_false_is_refused_on_trace_arms_naming_row_and_setting(tmp_path):
    tok = tokenizer_with("qwen3.jinja")
    ctk = {"enable_thinking": False}
    for row in arm_rows():
        path = write_arm(tmp_path, row)
        if row.arm == "vanilla":
            # answer-only target after the closed empty <think> block: the same context at generation
            kept, _ = preflight(read_rows(path), tok, 1024, path=path, chat_template_kwargs=ctk)
            assert len(kept) == 3
            continue
        with pytest.raises(DataError) as err:
            preflight(read_rows(path), tok, 1024, path=path, chat_template_kwargs=ctk, drop=True)
        msg = str(err.value)
        assert f"{path}:1: id 'babi/qa1/0/0'" in msg and f"{path}:3: id 'babi/qa1/0/2'" in msg
        assert "for 3 row(s) the generation prompt is not a prefix" in msg
        assert "chat_template_kwargs {'enable_thinking': False}" in msg and "leave enable_thinking unset" in msg
        assert "</think>" in msg  # shows where the two renders part


class _Day:
    """Stands in for datetime.datetime in transformers' chat-template module: the clock reads ``day``."""

    day = dt.datetime(2026, 12, 1)

    @classmethod
    def now(cls, tz=None):
        return cls.day


def _render_on(day: dt.datetime, monkeypatch, tok, messages, ctk):
    import transformers.utils.chat_template_utils as ctu

    monkeypatch.setattr(_Day, "day", day)
    monkeypatch.setattr(ctu, "datetime", _Day)
    return prompt_ids(tok, messages, ctk)


def test_llama_date_is_pinned_so_two_days_give_the_same_ids(monkeypatch):
    tok = tokenizer_with("llama3_2.jinja")
    messages = arm_rows()[1].prompt
    day1, day2 = dt.datetime(2026, 12, 1), dt.datetime(2027, 3, 15)
    # the problem: the template stamps the clock's date
    a, b = (_render_on(d, monkeypatch, tok, messages, {}) for d in (day1, day2))
    assert a != b and "Today Date: 01 Dec 2026" in tok.decode(a)
    # pinned through the template's own variable: same ids on both days
    ctk = students.pin_template_kwargs(tok.chat_template, {})
    assert ctk == {"date_string": students.PINNED_TEMPLATE_DATE}
    a, b = (_render_on(d, monkeypatch, tok, messages, ctk) for d in (day1, day2))
    assert a == b and f"Today Date: {students.PINNED_TEMPLATE_DATE}" in tok.decode(a)
    # a date the user sets is kept; templates without a date get nothing added
    assert students.pin_template_kwargs(tok.chat_template, {"date_string": "02 Jan 2025"}) == \
        {"date_string": "02 Jan 2025"}
    assert students.pin_template_kwargs((TEMPLATES / "qwen3.jinja").read_text(), {}) == {}


def test_pinned_date_recorded_by_train_and_reused_by_generate(tmp_path, monkeypatch):
    """tiny-random with Llama-3.2's template: train on one day, generate on another, same prompt ids."""
    from tracekd.generate import GenerateConfig, generate
    from tracekd.generate.run import manifest_path
    from tracekd.train import TrainConfig, train

    folder = tmp_path / "tiny-llama-template"
    shutil.copytree(students.resolve("tiny-random").source, folder)
    (folder / "chat_template.jinja").write_text((TEMPLATES / "llama3_2.jinja").read_text(encoding="utf-8"))
    tcfg = json.loads((folder / "tokenizer_config.json").read_text())
    tcfg.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(tcfg))

    rows = arm_rows()[1]
    train_file = write_arm(tmp_path, rows, n=4)
    import transformers.utils.chat_template_utils as ctu

    monkeypatch.setattr(ctu, "datetime", _Day)
    monkeypatch.setattr(_Day, "day", dt.datetime(2026, 12, 1))
    said: list[str] = []
    out = train(TrainConfig(train_file=str(train_file), output_dir=str(tmp_path / "run"), student=str(folder),
                            max_steps=1, precision="fp32", per_device_train_batch_size=4,
                            gradient_accumulation_steps=1, lora_r=4, lora_alpha=8, max_length=512, progress=False),
                log=lambda *a: said.append(" ".join(map(str, a))))
    pinned = {"date_string": students.PINNED_TEMPLATE_DATE}
    assert json.loads((out / "train_config.json").read_text())["chat_template_kwargs"] == pinned
    assert json.loads((out / "manifest.json").read_text())["config"]["chat_template_kwargs"] == pinned
    assert any("pinned to date_string" in s for s in said)

    monkeypatch.setattr(_Day, "day", dt.datetime(2027, 3, 15))  # generation on another day
    gen_file = generate(GenerateConfig(input_file=str(train_file), output_file=str(tmp_path / "gen.jsonl"),
                                       adapter=str(out), max_new_tokens=2, precision="fp32", progress=False),
                        log=lambda *_: None)
    settings = json.loads(manifest_path(gen_file).read_text())["settings"]
    assert settings["chat_template_kwargs"] == pinned
    tok = students.load_tokenizer(students.resolve(str(folder)))
    ids, _ = tokenize_row(tok, rows, pinned)
    first = json.loads(gen_file.read_text().splitlines()[0])
    assert first["prompt_tokens"] == len(prompt_ids(tok, rows.prompt, pinned)) <= len(ids)
