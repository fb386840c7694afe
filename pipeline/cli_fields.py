"""Command-line options as dataclass field metadata.

A config field that a command exposes says so in its metadata (``option("--steps", "Length of the schedule.")``):
the option's name, help and the values it takes. ``field_options`` reads them off a dataclass (nested sections
included) and ``click_options`` makes the click options, with the field's type and default, so a command never
copies a field's name, type, default or help by hand. Nothing here imports click until options are made.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any


def option(flag: str, text: str = "", **spec: Any) -> dict[str, Any]:
    """Field metadata: the field is set by the option ``flag`` with help ``text``.

    ``spec``: ``choices`` (the values it takes), ``range`` ((lo, hi) inclusive), ``exists`` (a path that must
    exist), ``required``, ``flag_value`` (the option is a flag that sets the field to this value; a bool field's
    flag sets True), ``default`` (the option's default when it is not the field's: None reads "not given"),
    ``always`` (an override the command passes even at its default).
    """
    return {"cli": {"flag": flag, "help": text, **spec}}


@dataclass(frozen=True)
class FieldOption:
    """One option: the field it sets (``path``, dotted through sections), its click parameter name (``dest``), the
    field's type, the option's default and its ``spec`` (``option``'s keywords)."""

    path: str
    flag: str
    dest: str
    kind: type
    default: Any
    spec: dict[str, Any]

    @property
    def is_flag(self) -> bool:
        return "flag_value" in self.spec or self.kind is bool

    @property
    def flag_value(self) -> Any:
        return self.spec.get("flag_value", True)

    def given(self, value: Any) -> bool:
        """Whether the command line set this option (a flag given; a value given other than the default, or given
        at all for an ``always`` option)."""
        if self.is_flag:
            return bool(value)
        return value is not None and (self.spec.get("always", False) or value != self.default)

    def field_value(self, value: Any) -> Any:
        """The field's value for the option's parsed ``value``."""
        if self.is_flag:
            return self.flag_value
        return self.kind(value) if "choices" in self.spec and value is not None else value


def _base(hint: Any) -> type:
    """``int`` for ``int``, ``float | None`` -> ``float``, ``tuple[int, ...]`` -> tuple."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        return _base(args[0])
    return typing.get_origin(hint) or hint


def field_options(cls: type, prefix: str = "") -> list[FieldOption]:
    """The options of ``cls``'s fields that carry ``option`` metadata, in field order, through nested sections."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        kind = _base(hints[f.name])
        if is_dataclass(kind):
            out += field_options(kind, f"{prefix}{f.name}.")
            continue
        spec = f.metadata.get("cli")
        if spec is None:
            continue
        spec = dict(spec)
        flag, _ = spec.pop("flag"), spec.pop("help")
        field_default = f.default if f.default is not MISSING else None
        default = spec.get("default", field_default)
        dest = flag.lstrip("-").replace("-", "_")
        out.append(FieldOption(prefix + f.name, flag, dest, kind, default, {**spec, "help": f.metadata["cli"]["help"]}))
    return out


def click_options(options: list[FieldOption]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator that adds ``options`` to a click command, in order."""
    import click

    def make(o: FieldOption) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        kw: dict[str, Any] = {"help": o.spec.get("help") or None}
        if o.is_flag:
            return click.option(o.flag, o.dest, is_flag=True, **kw)
        if "choices" in o.spec:
            kind: Any = click.Choice([str(c) for c in o.spec["choices"]])
        elif "range" in o.spec:
            lo, hi = o.spec["range"]
            kind = (click.IntRange if o.kind is int else click.FloatRange)(lo, hi)
        elif o.spec.get("exists"):
            kind = click.Path(exists=True)
        else:
            kind = o.kind
        default = str(o.default) if "choices" in o.spec and o.default is not None else o.default
        shown = o.default is not None and not o.spec.get("required")
        return click.option(
            o.flag, o.dest, type=kind, default=default, show_default=shown, required=o.spec.get("required", False), **kw
        )

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for o in reversed(options):
            fn = make(o)(fn)
        return fn

    return decorate
