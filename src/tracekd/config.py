"""Typed configs from YAML files, dicts and command-line flags, for dataclasses with help in metadata.

A config class is a plain dataclass whose fields carry ``metadata={"help": ...}`` (and optionally
``"aliases"``: extra flag names, ``"choices"``), in the style of TRL's ``SFTConfig``. Values are
layered: field defaults < a YAML file (or dict) < explicit overrides (e.g. the flags given on the
command line). Unknown keys are errors with a did-you-mean; values are checked against the field
types (``int``, ``float``, ``bool``, ``str``, ``list[str]``, ``list[int]``, ``X | None``, and nested
config dataclasses, e.g. ``list[DatasetEntry]``).

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
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .errors import ConfigError, did_you_mean

C = TypeVar("C")

_NONE_WORDS = ("none", "null", "~")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


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
        if isinstance(value, str):
            import json

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

    Keys may use ``-`` or ``_``. Unknown keys, bad values and missing required fields raise
    :class:`ConfigError` naming the file and the key.
    """
    where = ""
    if source is None:
        data: dict = {}
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        where = str(source)
        data = read_yaml(source)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for layer, layer_where in ((data, where), (dict(overrides or {}), "")):
        for key, value in layer.items():
            name = str(key).replace("-", "_")
            if name not in fields:
                msg = did_you_mean(str(key), fields, f"{cls.__name__} key")
                raise ConfigError(f"{layer_where}: {msg}" if layer_where else msg)
            values[name] = coerce(value, hints[name], name, layer_where)
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError((f"{where}: " if where else "") + f"{cls.__name__}: missing required key(s): "
                          + ", ".join(missing))
    for name, value in values.items():
        choices = fields[name].metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise ConfigError((f"{where}: " if where else "") + f"key {name!r}: "
                              + did_you_mean(str(value), choices, "value"))
    return cls(**values)


def to_dict(config: Any) -> dict:
    """A config as plain JSON-able data (for manifests)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()}


def flag_name(field_name: str) -> str:
    """
    >>> flag_name("per_device_train_batch_size")
    '--per-device-train-batch-size'
    """
    return "--" + field_name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of ``cls`` (plus its ``aliases``), with the field's help and default.

    Flags default to ``argparse.SUPPRESS``, so only the flags a user gives become overrides
    (see :func:`overrides_from_args`); a config file's values are not shadowed by flag defaults.
    """
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        base, _ = _split_optional(hints[f.name])
        names = [flag_name(f.name), *f.metadata.get("aliases", ())]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f.metadata.get("help", "")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            help_text += " (required, here or in --config)"
        elif default is not None and default != [] and base is not bool:
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            help_text += f" (default: {shown})"
        help_text = help_text.replace("%", "%%")
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["metavar"] = f.name.upper().split("_")[-1] if len(f.name) > 12 else f.name.upper()
            if f.metadata.get("choices"):
                kw["choices"] = list(f.metadata["choices"])
        parser.add_argument(*names, **kw)


def overrides_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that were given on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def explain(cls: type) -> str:
    """Every key of ``cls`` with its type, default and help, one per line (for docs and --help)."""
    hints = _hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = ("(required)" if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   else repr(f.default if f.default is not dataclasses.MISSING else f.default_factory()))
        tp = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
        lines.append(f"{f.name}: {tp} = {default}  # {f.metadata.get('help', '')}")
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

