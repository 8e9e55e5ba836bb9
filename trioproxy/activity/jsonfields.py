"""The JSON form of frozen dataclasses, derived from their fields.

:func:`to_json` gives a dataclass's JSON object: its fields in declaration order, nested
dataclasses as objects and tuples as lists. :func:`read_fields` reads the fields back
from decoded JSON, checking each value against the field's type hint; the first
offending field raises :class:`MalformedDocument`, whose message names it by its path in
the document, e.g. ``instances[0].activity.connections[1].bytes_rx: missing``. Keys
the dataclass does not know are ignored, so a newer proxy's document still reads.

Field types that read: ``bool``, ``int`` (a non-negative count), ``float`` (finite; an
integer is accepted), ``str``, a ``Literal`` of strings, ``X | None``, ``tuple[str, ...]``,
``tuple[D, ...]`` and ``D`` for a dataclass ``D`` with a ``from_dict(data, path)``
classmethod, which reads the nested object (and says what path it is at). A field declared
with ``metadata=NOT_IN_JSON`` is not a member of the object (an instance's name, say,
which its document gives elsewhere); whoever reads the object supplies it. A field declared
with ``metadata=MAY_BE_ABSENT`` (and a default) is read as its default when its key is
missing, so a document of an older proxy, which did not have it yet, still reads.

Nothing here imports Trio: the terminal view reads documents with it.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, Self, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")

#: Field metadata for a field that is not a member of the dataclass's JSON object.
NOT_IN_JSON: Mapping[str, object] = types.MappingProxyType({"json": False})
#: Field metadata for a field whose key a document may lack (it then reads as the default).
MAY_BE_ABSENT: Mapping[str, object] = types.MappingProxyType({"absent": True})


class MalformedDocument(ValueError):
    """Decoded JSON that does not have the expected shape.

    The message names the first offending field by its path and says what was expected:
    ``timestamp: missing``, ``instances[3]: expected an object``.
    """


class JsonObject:
    """A decoded JSON object being read, with its path in the document for messages.

    Raises:
        MalformedDocument: ``value`` is not an object.
    """

    __slots__ = ("_path", "_value")

    def __init__(self, value: object, path: str = "") -> None:
        if not isinstance(value, Mapping):
            raise MalformedDocument(f"{path or 'the document'}: expected an object")
        self._value: Mapping[str, object] = value
        self._path = path

    def at(self, key: str) -> str:
        """The path of member ``key``."""
        return f"{self._path}.{key}" if self._path else key

    def has(self, key: str) -> bool:
        """Whether member ``key`` is present."""
        return key in self._value

    def get(self, key: str) -> object:
        """Member ``key``, of any type; :class:`MalformedDocument` if it is missing."""
        if key not in self._value:
            raise MalformedDocument(f"{self.at(key)}: missing")
        return self._value[key]

    def wrong(self, key: str, expected: str) -> MalformedDocument:
        """The error for member ``key`` not being ``expected`` (a noun phrase)."""
        return MalformedDocument(f"{self.at(key)}: expected {expected}")


Reader = Callable[[JsonObject, str], Any]


def _text(obj: JsonObject, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise obj.wrong(key, "a string")
    return value


def _flag(obj: JsonObject, key: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise obj.wrong(key, "true or false")
    return value


def _count(obj: JsonObject, key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise obj.wrong(key, "a non-negative integer")
    return value


def _number(obj: JsonObject, key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise obj.wrong(key, "a number")
    if not math.isfinite(value):
        raise obj.wrong(key, "a finite number")
    return float(value)


def _strings(obj: JsonObject, key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise obj.wrong(key, "a list of strings")
    return tuple(value)


def _counts(obj: JsonObject, key: str) -> tuple[int, ...]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    ):
        raise obj.wrong(key, "a list of non-negative integers")
    return tuple(value)


def _choice(choices: tuple[str, ...]) -> Reader:
    expected = "one of " + ", ".join(map(repr, choices))

    def read(obj: JsonObject, key: str) -> str:
        value = obj.get(key)
        if value not in choices:
            raise obj.wrong(key, expected)
        return str(value)

    return read


def _optional(inner: Reader) -> Reader:
    def read(obj: JsonObject, key: str) -> Any:
        return None if obj.get(key) is None else inner(obj, key)

    return read


def _nested(from_dict: Callable[[object, str], Any]) -> Reader:
    def read(obj: JsonObject, key: str) -> Any:
        return from_dict(obj.get(key), obj.at(key))

    return read


def _nested_tuple(from_dict: Callable[[object, str], Any]) -> Reader:
    def read(obj: JsonObject, key: str) -> tuple[Any, ...]:
        value = obj.get(key)
        if not isinstance(value, list):
            raise obj.wrong(key, "a list")
        return tuple(from_dict(item, f"{obj.at(key)}[{i}]") for i, item in enumerate(value))

    return read


def _from_dict(cls: object) -> Callable[[object, str], Any]:
    from_dict = getattr(cls, "from_dict", None)
    if from_dict is None:
        raise TypeError(f"{cls!r} has no from_dict(data, path) to read it with")
    return from_dict  # type: ignore[no-any-return]


_SCALARS: dict[object, Reader] = {bool: _flag, int: _count, float: _number, str: _text}


def _reader(hint: Any) -> Reader:
    """How to read a field of type ``hint``.

    Raises:
        TypeError: a type this module does not read (a programming error).
    """
    scalar = _SCALARS.get(hint)
    if scalar is not None:
        return scalar
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal and all(isinstance(a, str) for a in args):
        return _choice(args)
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return _optional(_reader(inner))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if args[0] is str:
            return _strings
        if args[0] is int:
            return _counts
        if dataclasses.is_dataclass(args[0]):
            return _nested_tuple(_from_dict(args[0]))
    if dataclasses.is_dataclass(hint):
        return _nested(_from_dict(hint))
    raise TypeError(f"no JSON reading for a field of type {hint!r}")


# Per dataclass, built on first use: (field name, reader) of its JSON fields, in order.
_READERS: dict[type[Any], tuple[tuple[str, Reader], ...]] = {}
# Per dataclass, built on first use: the names of its JSON fields, in order.
_JSON_NAMES: dict[type[Any], tuple[str, ...]] = {}
# Per dataclass, built on first use: its JSON fields that a document may lack.
_MAY_BE_ABSENT: dict[type[Any], frozenset[str]] = {}


def _may_be_absent(cls: type[Any]) -> frozenset[str]:
    names = _MAY_BE_ABSENT.get(cls)
    if names is None:
        names = _MAY_BE_ABSENT[cls] = frozenset(
            f.name for f in dataclasses.fields(cls) if f.metadata.get("absent", False)
        )
    return names


def _readers(cls: type[Any]) -> tuple[tuple[str, Reader], ...]:
    readers = _READERS.get(cls)
    if readers is None:
        hints = get_type_hints(cls)
        readers = _READERS[cls] = tuple((name, _reader(hints[name])) for name in _json_names(cls))
    return readers


def _json_names(cls: type[Any]) -> tuple[str, ...]:
    names = _JSON_NAMES.get(cls)
    if names is None:
        names = _JSON_NAMES[cls] = tuple(
            f.name for f in dataclasses.fields(cls) if f.metadata.get("json", True)
        )
    return names


def read_fields(cls: type[Any], obj: JsonObject, *, omit: Collection[str] = ()) -> dict[str, Any]:
    """The values of dataclass ``cls``'s JSON fields in ``obj``, by field name.

    Fields are read in declaration order, so the first one in error is reported; those
    named in ``omit`` are left to the caller (one that needs another field's value), and
    so are those declared ``MAY_BE_ABSENT`` that ``obj`` lacks (they keep their default).

    Raises:
        MalformedDocument: a field is missing or does not have its type.
    """
    absent = _may_be_absent(cls)
    return {
        name: read(obj, name)
        for name, read in _readers(cls)
        if name not in omit and (name not in absent or obj.has(name))
    }


def read_dataclass(cls: type[T], obj: JsonObject) -> T:
    """A ``cls`` built from ``obj``; every field of ``cls`` must be in JSON.

    Raises:
        MalformedDocument: a field is missing or does not have its type.
    """
    return cls(**read_fields(cls, obj))


def to_json(obj: object) -> dict[str, Any]:
    """The JSON object of dataclass instance ``obj``: its JSON fields in order."""
    return {name: _plain(getattr(obj, name)) for name in _json_names(type(obj))}


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


class JsonRecord:
    """``to_dict``/``from_dict`` for a frozen dataclass whose JSON object is its fields.

    A base of slotted dataclasses (it adds no slot of its own).
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object: the fields in declaration order."""
        return to_json(self)

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> Self:
        """Read the JSON object ``data``; ``path`` is where it is, for messages.

        Raises:
            MalformedDocument: a field is missing or does not have its type.
        """
        return read_dataclass(cls, JsonObject(data, path))
