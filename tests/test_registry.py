"""The one Registry type: lazy imports, did-you-mean, listing; and every named thing uses it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tracekd.errors import ConfigError
from tracekd.registry import Registry


def test_names_keep_their_order_and_a_name_is_registered_once():
    registry = Registry("colour")
    registry.add("red", 1, "warm")
    registry.add("blue", 2)
    assert registry.names() == ["red", "blue"] and list(registry) == ["red", "blue"] and len(registry) == 2
    assert registry.listing() == [("red", "warm"), ("blue", "")]
    assert registry.describe("red") == "warm"
    with pytest.raises(ConfigError, match="colour 'red' is registered twice"):
        registry.add("red", 3)


def test_a_miss_suggests_the_closest_name_and_lists_the_choices():
    registry = Registry("answer scorer")
    registry.add("strict", "tracekd.score.answer:strict")
    registry.add("marco", "tracekd.score.marco:make_scorer")
    message = "unknown answer scorer 'strikt'; did you mean 'strict'? (choices: marco, strict)"
    for call in (registry.get, registry.check, registry.describe):
        with pytest.raises(ConfigError) as e:
            call("strikt")
        assert str(e.value) == message
    with pytest.raises(ConfigError, match=r"unknown answer scorer 'zzz' \(choices: marco, strict\)"):
        registry.get("zzz")


def test_a_path_that_does_not_import_is_a_config_error_naming_the_entry():
    registry = Registry("generator")
    registry.add("gone", "tracekd.no_such_module")
    registry.add("typo", "tracekd.errors:NoSuchName")
    with pytest.raises(ConfigError, match=r"generator 'gone' is not available: No module named 'tracekd.no_such_module'"):
        registry.get("gone")
    with pytest.raises(ConfigError, match="generator 'typo' is not available: .*NoSuchName"):
        registry.get("typo")
    assert registry.check("gone") == "gone"  # checking a name imports nothing


def test_a_path_is_imported_only_when_asked_for():
    """Listing and checking every registry imports none of the modules its entries name."""
    code = textwrap.dedent("""
        import sys
        from tracekd.cli import COMMANDS
        from tracekd.datasets import DATASETS
        from tracekd.generate.base import BACKENDS
        from tracekd.report.extra import SECTIONS
        from tracekd.score.answer import SCORERS
        from tracekd.students import BUILTINS
        from tracekd.synth import GENERATORS
        from tracekd.traces.corrupt import ARM_MAKERS
        for registry in (COMMANDS, DATASETS, BACKENDS, SECTIONS, SCORERS, BUILTINS, GENERATORS, ARM_MAKERS):
            registry.listing(), [registry.check(n) for n in registry]
        lazy = ["tracekd.commands.train", "tracekd.datasets.marco", "tracekd.generate.hf", "tracekd.generate.vllm",
                "tracekd.score.marco", "tracekd.study.report", "tracekd.synth.cotemp", "tracekd.teacher.arms",
                "tracekd.teacher.report"]
        print(sorted(m for m in lazy if m in sys.modules))
        print(DATASETS.get("marco").name, "tracekd.datasets.marco" in sys.modules)
        print(BACKENDS.get("vllm").__module__, "vllm" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "marco True", "tracekd.generate.vllm False"]


def test_every_named_thing_is_looked_up_through_a_registry():
    from tracekd.cli import COMMANDS
    from tracekd.datasets import DATASETS
    from tracekd.generate.base import BACKENDS
    from tracekd.report.extra import SECTIONS
    from tracekd.score.answer import SCORERS
    from tracekd.score.steps import TRACE_DEFINITIONS
    from tracekd.students import BUILTINS
    from tracekd.synth import GENERATORS
    from tracekd.traces.corrupt import ARM_MAKERS
    from tracekd.traces.templates import shipped_templates

    everything = (COMMANDS, DATASETS, BACKENDS, SECTIONS, SCORERS, TRACE_DEFINITIONS, BUILTINS, GENERATORS,
                  ARM_MAKERS, shipped_templates())
    for registry in everything:
        assert isinstance(registry, Registry) and len(registry) > 0
        for name in registry:  # (the vllm backend is imported only when chosen: test_generate checks that)
            if registry is not BACKENDS:
                assert registry.get(name) is not None, (registry.what, name)
    for registry in everything[2:]:
        assert all(description for _, description in registry.listing()), registry.what
