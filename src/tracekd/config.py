"""Typed configs from YAML files, dicts and command-line flags, for dataclasses with help in metadata.

A config class is a plain dataclass whose fields carry ``metadata={"help": ...}`` (and optionally
``"aliases"``: extra flag names, ``"choices"``), in the style of TRL's ``SFTConfig``. Values are
layered: field defaults < a YAML file (or dict) < explicit overrides (e.g. the flags given on the
command line). Unknown keys are errors with a did-you-mean; values are checked against the field
types (``int``, ``float``, ``bool``, ``str``, ``list[str]``, ``list[int]``, ``X | None``, and nested
config dataclasses, e.g. ``list[DatasetEntry]``).

A config may group its settings into *sections* (TRL-style: paths, model, optimiser ...): fields whose
type is a dataclass and whose metadata has ``"section": True``, on a class decorated with
:func:`sectioned`. Files, dicts and flags stay flat (``learning_rate: 1e-3``; a section's name with a
mapping, ``optimizer: {learning_rate: 1e-3}``, works too); the loader routes each key to its section.

>>> from dataclasses import dataclass, field
>>> @dataclass
... class Demo:
...     lr: float = field(default=2e-4, metadata={"help": "learning rate"})
...     modules: list[str] = field(default_factory=lambda: ["q_proj"], metadata={"help": "modules"})
...     steps: int | None = field(default=None, metadata={"help": "max steps"})
>>> load_config(Demo, {"lr": 1e-3}, {"steps": 5})
Demo(lr=0.001, modules=['q_proj'], steps=5)
>>> load_config(Demo, {"modules": "q_proj,v_proj"}).modules
['q_proj', 'v_proj']
>>> load_config(Demo, {"lrr": 1})
Traceback (most recent call last):
...
tracekd.errors.ConfigError: unknown Demo key 'lrr'; did you mean 'lr'? (choices: lr, modules, steps)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import operator
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from .errors import ConfigError, did_you_mean

C = TypeVar("C")

_NONE_WORDS = ("none", "null", "~")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class Setting(NamedTuple):
    """One setting of a config class: its dataclass field, its type and the section holding it (None: top level)."""

    field: dataclasses.Field
    type: Any
    section: str | None


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


#: the metadata of a section field: ``model: ModelSettings = field(default_factory=ModelSettings, metadata=SECTION)``
SECTION = {"section": True}


def section_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are config sections (``metadata={"section": True}``)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("section")]


@functools.cache
def settings_of(cls: type) -> dict[str, Setting]:
    """Every setting of ``cls`` by its flat name (a sectioned class: its sections' fields, in order).

    >>> from tracekd.train.config import TrainConfig
    >>> settings_of(TrainConfig)["learning_rate"].section
    'optimizer'
    """
    hints = _hints(cls)
    out: dict[str, Setting] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if not f.metadata.get("section"):
            out[f.name] = Setting(f, hints[f.name], None)
            continue
        section_cls = hints[f.name]
        section_hints = _hints(section_cls)
        for g in dataclasses.fields(section_cls):
            if g.init:
                if g.name in out:
                    raise TypeError(f"{cls.__name__}: setting {g.name!r} is in two sections")
                out[g.name] = Setting(g, section_hints[g.name], f.name)
    return out


def sectioned(cls: type[C]) -> type[C]:
    """Class decorator for a ``@dataclass(init=False)`` made of config sections.

    The class gets a constructor taking every setting by its flat name (or a whole section object by
    the section's name) and a read-only attribute per setting, so ``TrainConfig(train_file=..,
    output_dir=.., lora_r=8).lora_r`` reads ``.model.lora_r``: the flat names are the keys of YAML
    files, flags and manifests. ``dataclasses.replace`` takes flat names too. ``__post_init__`` runs
    after the sections are built (each section validates its own values in its own ``__post_init__``).
    """
    sections = [f.name for f in section_fields(cls)]
    if not sections or len(sections) != len(dataclasses.fields(cls)):
        raise TypeError(f"{cls.__name__}: every field of a sectioned config must be a section")

    def __init__(self, **given: Any) -> None:
        settings = settings_of(cls)
        hints = _hints(cls)
        whole = {k: given.pop(k) for k in sections if k in given}
        per_section: dict[str, dict[str, Any]] = {name: {} for name in sections}
        for key, value in given.items():
            if key not in settings:
                raise ConfigError(did_you_mean(key, settings, f"{cls.__name__} key"))
            per_section[settings[key].section][key] = value
        missing = [n for n, s in settings.items()
                   if s.section not in whole and n not in per_section[s.section] and _required(s.field)]
        if missing:
            raise ConfigError(f"{cls.__name__}: missing required key(s): " + ", ".join(missing))
        for name in sections:
            if name in whole:
                value = dataclasses.replace(whole[name], **per_section[name])
            else:
                value = hints[name](**per_section[name])
            object.__setattr__(self, name, value)
        if hasattr(self, "__post_init__"):
            self.__post_init__()

    cls.__init__ = __init__  # type: ignore[misc]
    for name, setting in settings_of(cls).items():
        setattr(cls, name, property(operator.attrgetter(f"{setting.section}.{name}"),
                                    doc=setting.field.metadata.get("help")))
    return cls


def flat_keys(cls: type, layer: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """A mapping of ``cls`` keys, flat: a section's name with a mapping becomes that section's keys.

    >>> from tracekd.train.config import TrainConfig
    >>> flat_keys(TrainConfig, {"seed": 1, "optimizer": {"learning_rate": 0.1}})
    {'seed': 1, 'learning_rate': 0.1}
    """
    sections = {f.name: _hints(cls)[f.name] for f in section_fields(cls)}
    out: dict[str, Any] = {}
    for key, value in layer.items():
        name = str(key).replace("-", "_")
        if name in sections and isinstance(value, Mapping):
            own = {f.name for f in dataclasses.fields(sections[name])}
            for sub, sub_value in value.items():
                if str(sub).replace("-", "_") not in own:
                    msg = f"{name}: " + did_you_mean(str(sub), own, f"{sections[name].__name__} key")
                    raise ConfigError(f"{where}: {msg}" if where else msg)
                out[str(sub)] = sub_value
        else:
            out[key] = value
    return out


def given(config: Any) -> dict[str, Any]:
    """The keys a config was loaded from by :func:`load_config`, with their values as written (before
    type conversion): what an experiment's stage keys hash, so a file written the same way keeps its
    keys. A config built in Python has none.
    """
    return dict(getattr(config, "_given", {}))


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); other types -> (type, False).

    >>> _split_optional(int | None)
    (<class 'int'>, True)
    >>> _split_optional(str)
    (<class 'str'>, False)
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return typing.Union[tuple(args)], optional
    return tp, False


def coerce(value: Any, tp: Any, name: str, where: str = "") -> Any:
    """Check ``value`` against the field type ``tp``, converting the lossless cases.

    Accepted conversions: int -> float; a comma-separated string -> list; the strings
    ``none``/``null`` -> None for optional fields; ``true``/``false`` strings -> bool.

    >>> coerce(3, float, "lr")
    3.0
    >>> coerce("none", int | None, "steps") is None
    True
    >>> coerce("1,2", list[int], "layers")
    [1, 2]
    >>> coerce("x", int, "steps")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: key 'steps': expected int, got 'x'
    """
    base, optional = _split_optional(tp)
    prefix = f"{where}: " if where else ""
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        if optional or base is Any:
            return None
        raise ConfigError(f"{prefix}key {name!r}: must not be empty")
    if base is Any:
        return value
    if dataclasses.is_dataclass(base):  # a nested config section
        if isinstance(value, base):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{prefix}key {name!r}: expected a mapping of {base.__name__} keys, got {value!r}")
        try:
            return load_config(base, value)
        except ConfigError as e:
            raise ConfigError(f"{prefix}key {name!r}: {e}") from None
    origin = typing.get_origin(base)
    if origin in (list, tuple):
        (item_tp,) = typing.get_args(base)[:1] or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{prefix}key {name!r}: expected a list, got {value!r}")
        return [coerce(v, item_tp, f"{name}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict or base is dict:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            value = parse_assignments(value, name)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(f"{prefix}key {name!r}: expected a JSON object, got {value!r}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{prefix}key {name!r}: expected a mapping, got {value!r}")
        return dict(value)
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise ConfigError(f"{prefix}key {name!r}: expected true or false, got {value!r}")
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{prefix}key {name!r}: expected a number, got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{prefix}key {name!r}: expected int, got {value!r}")
    if base is str:
        if isinstance(value, (str, Path)):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{prefix}key {name!r}: expected a string, got {value!r}")
    if base == (int | float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{prefix}key {name!r}: expected a number, got {value!r}")
    return value


def parse_assignments(items: list[str] | tuple[str, ...], name: str = "option") -> dict:
    """``["key=value", ...]`` (repeated ``--option`` flags) -> dict, values read as YAML scalars.

    >>> parse_assignments(["split_seed=7", "first_question_only=false", "evidence=is-selected"])
    {'split_seed': 7, 'first_question_only': False, 'evidence': 'is-selected'}
    """
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"key {name!r}: expects KEY=VALUE items, got {item!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML file's top-level mapping (an empty file is an empty mapping)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def load_config(cls: type[C], source: str | Path | Mapping[str, Any] | None = None,
                overrides: Mapping[str, Any] | None = None) -> C:
    """Build ``cls`` from its defaults, then ``source`` (YAML path or dict), then ``overrides``.

    Keys may use ``-`` or ``_``; the settings of a sectioned config are given flat (or under their
    section's name). Unknown keys, bad values and missing required fields raise :class:`ConfigError`
    naming the file and the key. The loaded config remembers its keys as written (:func:`given`).
    """
    where = ""
    if source is None:
        data: dict = {}
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        where = str(source)
        data = read_yaml(source)
    settings = settings_of(cls)
    values: dict[str, Any] = {}
    written: dict[str, Any] = {}
    for layer, layer_where in ((data, where), (dict(overrides or {}), "")):
        written.update(layer)
        for key, value in flat_keys(cls, layer, layer_where).items():
            name = str(key).replace("-", "_")
            if name not in settings:
                msg = did_you_mean(str(key), settings, f"{cls.__name__} key")
                raise ConfigError(f"{layer_where}: {msg}" if layer_where else msg)
            values[name] = coerce(value, settings[name].type, name, layer_where)
    missing = [n for n, s in settings.items() if n not in values and _required(s.field)]
    if missing:
        raise ConfigError((f"{where}: " if where else "") + f"{cls.__name__}: missing required key(s): "
                          + ", ".join(missing))
    for name, value in values.items():
        choices = settings[name].field.metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise ConfigError((f"{where}: " if where else "") + f"key {name!r}: "
                              + did_you_mean(str(value), choices, "value"))
    config = cls(**values)
    object.__setattr__(config, "_given", written)
    return config


def to_dict(config: Any) -> dict:
    """A config as plain JSON-able data (for manifests): flat, a sectioned config's settings in section order."""
    sections = section_fields(type(config))
    flat = ({k: v for f in sections for k, v in dataclasses.asdict(getattr(config, f.name)).items()} if sections
            else dataclasses.asdict(config))
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in flat.items()}


def flag_name(field_name: str) -> str:
    """
    >>> flag_name("per_device_train_batch_size")
    '--per-device-train-batch-size'
    """
    return "--" + field_name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per setting of ``cls`` (plus its ``aliases``), with the field's help and default.

    Flags default to ``argparse.SUPPRESS``, so only the flags a user gives become overrides
    (see :func:`overrides_from_args`); a config file's values are not shadowed by flag defaults.
    A field with ``"positional": True`` is also an optional positional argument; ``"repeatable": True``
    makes a list (or ``KEY=VALUE`` mapping) flag that may be given several times. The settings of a
    sectioned config are listed under one heading per section.
    """
    groups: dict[str | None, Any] = {None: parser}
    for f in section_fields(cls):
        doc = (_hints(cls)[f.name].__doc__ or "").strip().splitlines()
        groups[f.name] = parser.add_argument_group(f"{f.name} settings", doc[0] if doc else None)
    for name, (f, tp, section) in settings_of(cls).items():
        if name in skip:
            continue
        target = groups[section]
        base, _ = _split_optional(tp)
        names = [flag_name(name), *f.metadata.get("aliases", ())]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f.metadata.get("help", "")
        if _required(f):
            help_text += " (required, here or in --config)"
        elif default not in (None, [], (), {}) and base is not bool:
            shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            help_text += f" (default: {shown})"
        help_text = help_text.replace("%", "%%")
        kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["metavar"] = f.metadata.get("metavar") or (
                name.upper().split("_")[-1] if len(name) > 12 else name.upper())
            if f.metadata.get("choices"):
                kw["choices"] = list(f.metadata["choices"])
            if f.metadata.get("repeatable"):
                kw["action"] = "append"
        if f.metadata.get("positional"):
            target.add_argument(name, nargs="?", default=argparse.SUPPRESS, metavar=kw.get("metavar"),
                                help=f"{help_text.replace(' (required, here or in --config)', '')} "
                                     f"(or {flag_name(name)})")
            kw["help"] = argparse.SUPPRESS
        target.add_argument(*names, **kw)


def overrides_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings of ``cls`` that were given on the command line."""
    names = settings_of(cls)
    return {k: v for k, v in vars(args).items() if k in names}


def explain(cls: type) -> str:
    """Every key of ``cls`` with its type, default and help, one per line (for docs and --help);
    a sectioned config's keys under a ``# section`` heading each (the keys themselves stay flat)."""
    lines = []
    heading = None
    for name, (f, tp, section) in settings_of(cls).items():
        if section != heading:
            heading = section
            doc = (_hints(cls)[section].__doc__ or "").strip().splitlines()
            lines += ([""] if lines else []) + [f"# {section}: {doc[0] if doc else ''}".rstrip(": ")]
        value = None if _required(f) else f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = ("(required)" if _required(f) else "(the section's defaults)" if dataclasses.is_dataclass(value)
                   else repr(value))
        tp_name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        lines.append(f"{name}: {tp_name} = {default}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)


def add_command_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """``--config YAML``, ``--explain`` and one flag per field of ``cls``: a config-driven subcommand."""
    parser.add_argument("--config", metavar="YAML", help=f"YAML file of {cls.__name__} keys (flags override it)")
    parser.add_argument("--explain", action="store_true", help="print every setting with its default and exit")
    add_config_arguments(parser, cls)


def config_from_args(args: argparse.Namespace, cls: type[C]) -> C | None:
    """The config a subcommand was given (defaults < --config < flags); None after printing ``--explain``."""
    if args.explain:
        print(explain(cls))
        return None
    return load_config(cls, args.config, overrides_from_args(args, cls))

