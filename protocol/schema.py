"""Version-gated message declarations, and the per-version ``construct`` Structs derived from them.

A Kafka message is declared once, the way Kafka's own JSON message specs are: a list of
fields, each with the versions it is present in (``"3+"``, ``"0-4"``), the versions in which it
is nullable, and a default. ``Message.struct(version)`` derives the ``construct`` Struct for one
version from that declaration:

* a field present in the version becomes ``name / <construct>``; strings, bytes and arrays use the
  compact encodings in flexible versions, and every struct of a flexible version ends with a
  ``tagged_fields`` TAG_BUFFER (kept as ``{tag: bytes}``);
* a field absent from the version becomes ``name / Computed(default)``: it is not on the wire,
  but a parsed message still has it, so handlers read every field the same way in every version;
* a present field may be left out when building, and is then built with its default (a field
  whose default is null must be given when null is not allowed in that version).

``Message.parse`` and ``Message.build`` are the only entry points; malformed bytes raise
``ProtocolError`` and nothing else. Parsed messages are ``construct.Container`` objects (dicts
with attribute access).
"""

from __future__ import annotations

import dataclasses
import io
from functools import cache
from typing import Any

from construct import (
    Computed,
    Construct,
    ConstructError,
    Container,
    Default,
    Struct,
)

from .errors import ProtocolError
from .types import (
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    KafkaArray,
    KafkaBytes,
    KafkaString,
    TaggedFields,
)

__all__ = [
    "BOOL",
    "BYTES",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "RECORDS",
    "STRING",
    "Array",
    "Field",
    "Message",
    "VersionRange",
]


@dataclasses.dataclass(frozen=True)
class VersionRange:
    """A closed range of versions, written as in Kafka's specs: ``"3+"``, ``"0-4"``, ``"2"``,
    ``"none"``."""

    low: int
    high: int | None  # None: no upper bound

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        if text == "none":
            return cls(0, -1)
        if text.endswith("+"):
            return cls(int(text[:-1]), None)
        low, sep, high = text.partition("-")
        return cls(int(low), int(high) if sep else int(low))

    def __contains__(self, version: int) -> bool:
        return self.low <= version and (self.high is None or version <= self.high)


_ALL = VersionRange(0, None)
_NONE = VersionRange(0, -1)


@dataclasses.dataclass(frozen=True)
class _Scalar:
    """A fixed-size wire type: the same construct in every version."""

    name: str
    construct: Construct
    default: Any


@dataclasses.dataclass(frozen=True)
class _Variable:
    """STRING or BYTES: the length prefix depends on nullability and flexibility."""

    name: str
    kind: type[KafkaString] | type[KafkaBytes]
    default: Any


INT8 = _Scalar("int8", Int8, 0)
INT16 = _Scalar("int16", Int16, 0)
INT32 = _Scalar("int32", Int32, 0)
INT64 = _Scalar("int64", Int64, 0)
BOOL = _Scalar("bool", Bool, False)
STRING = _Variable("string", KafkaString, "")
BYTES = _Variable("bytes", KafkaBytes, b"")
#: A RecordBatch blob: bytes on the wire, opaque to the message layer.
RECORDS = _Variable("records", KafkaBytes, None)


class Array:
    """ARRAY of a primitive type (``Array(INT32)``) or of a struct (``Array(Field(...), ...)``)."""

    __slots__ = ("element",)

    def __init__(self, *element: Field | _Scalar | _Variable):
        self.element: _Scalar | _Variable | tuple[Field, ...]
        if len(element) == 1 and not isinstance(element[0], Field):
            self.element = element[0]
        else:
            self.element = tuple(element)

    def __repr__(self) -> str:
        return f"Array({self.element!r})"


_NO_DEFAULT = object()


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a message or of an array's struct.

    :param name: the field name (snake_case of Kafka's name).
    :param type: ``INT8`` … ``RECORDS``, or an ``Array``.
    :param versions: the versions the field is on the wire in, e.g. ``"3+"``.
    :param nullable: the versions in which null (``None``) is allowed, e.g. ``"1+"``.
    :param default: the value of the field when absent from a version, and the value built
        when it is left out; by default 0, ``False``, ``""``, ``b""``, ``[]`` or ``None``
        (nullable fields and records).
    :param flexible: ``False`` to keep the classic encoding even in flexible versions (the
        request header's ``client_id``).
    """

    name: str
    type: _Scalar | _Variable | Array
    versions: str = "0+"
    nullable: str = "none"
    default: Any = _NO_DEFAULT
    flexible: bool = True

    def present_in(self, version: int) -> bool:
        return version in VersionRange.parse(self.versions)

    def nullable_in(self, version: int) -> bool:
        return version in VersionRange.parse(self.nullable)

    def default_value(self) -> Any:
        """The declared default; lists are fresh each time."""
        if self.default is not _NO_DEFAULT:
            return list(self.default) if isinstance(self.default, list) else self.default
        if isinstance(self.type, Array):
            return None if self.nullable != "none" else []
        if self.nullable != "none":
            return None
        return self.type.default


class _MessageStruct(Struct):
    """``construct.Struct`` that does not keep a reference to the input stream in its result."""

    def _parse(self, stream, context, path):
        obj = super()._parse(stream, context, path)
        del obj["_io"]
        return obj


class Message:
    """One Kafka message (a request or a response body), declared once for all its versions.

    :param name: e.g. ``"ProduceRequest"``.
    :param versions: the valid versions, e.g. ``"0-8"``.
    :param flexible: the flexible versions (compact encodings and tagged fields), e.g. ``"3+"``.
    :param fields: the top-level fields, in wire order.
    """

    def __init__(self, name: str, *, versions: str, flexible: str = "none", fields: tuple):
        self.name = name
        self.versions = VersionRange.parse(versions)
        self.flexible_versions = VersionRange.parse(flexible)
        self.fields: tuple[Field, ...] = tuple(fields)

    def __repr__(self) -> str:
        return f"<Message {self.name}>"

    def is_flexible(self, version: int) -> bool:
        return version in self.flexible_versions

    def check_version(self, version: int) -> None:
        if version not in self.versions:
            raise ProtocolError(f"{self.name} has no version {version}")

    def struct(self, version: int) -> Struct:
        """The ``construct`` Struct of this message in ``version`` (built once, then cached)."""
        self.check_version(version)
        return _derive_struct(self, version)

    def parse(self, data: bytes | bytearray | memoryview, version: int) -> Container:
        """Decode one message body that fills ``data`` exactly.

        :raises ProtocolError: truncated, trailing or malformed bytes, or an unknown version.
        """
        struct = self.struct(version)
        data = bytes(data)
        try:
            obj, consumed = _parse_prefix(struct, data)
        except ConstructError as e:
            raise ProtocolError(f"malformed {self.name} v{version}: {e}") from None
        if consumed != len(data):
            raise ProtocolError(
                f"malformed {self.name} v{version}: {len(data) - consumed} bytes left over"
            )
        return obj

    def build(self, obj: dict, version: int) -> bytes:
        """Encode ``obj`` as this message in ``version``.

        Fields absent from the version are ignored; present fields left out are built with
        their default.

        :raises ProtocolError: a value that does not fit its wire type.
        """
        struct = self.struct(version)
        try:
            return struct.build(obj)
        except (ConstructError, KeyError, TypeError, ValueError, OverflowError) as e:
            raise ProtocolError(f"cannot build {self.name} v{version}: {e!r}") from None

    def present_fields(self, version: int) -> list[Field]:
        """The top-level fields on the wire in ``version``, in order."""
        return [f for f in self.fields if f.present_in(version)]


def _parse_prefix(struct: Struct, data: bytes) -> tuple[Container, int]:
    """Parse ``struct`` from the start of ``data``; return the object and bytes consumed."""
    stream = io.BytesIO(data)
    obj = struct.parse_stream(stream)
    return obj, stream.tell()


@cache
def _derive_struct(message: Message, version: int) -> Struct:
    return _struct_of(message.fields, version, message.is_flexible(version))


def _struct_of(fields: tuple[Field, ...], version: int, flexible: bool) -> Struct:
    members = []
    for field in fields:
        if not field.present_in(version):
            members.append(field.name / Computed(_constant(field)))
            continue
        con = _construct_of(field, version, flexible)
        if field.nullable_in(version) and field.default_value() is not None:
            # Default would turn an explicit null into the default: such fields must be given.
            members.append(field.name / con)
        else:
            members.append(field.name / Default(con, _constant(field)))
    if flexible:
        members.append("tagged_fields" / Default(TaggedFields, _empty_tags))
    return _MessageStruct(*members)


def _constant(field: Field):
    """A context function returning the field's default (fresh for lists)."""
    return lambda _ctx: field.default_value()


def _empty_tags(_ctx) -> dict:
    return {}


def _construct_of(field: Field, version: int, flexible: bool) -> Construct:
    compact = flexible and field.flexible
    nullable = field.nullable_in(version)
    kind = field.type
    if isinstance(kind, Array):
        element = kind.element
        if isinstance(element, tuple):
            sub = _struct_of(element, version, flexible)
        else:
            sub = _element_construct(element, compact)
        return KafkaArray(sub, nullable=nullable, compact=compact)
    if isinstance(kind, _Variable):
        return kind.kind(nullable=nullable, compact=compact)
    return kind.construct


def _element_construct(kind: _Scalar | _Variable, compact: bool) -> Construct:
    if isinstance(kind, _Variable):
        return kind.kind(nullable=False, compact=compact)
    return kind.construct
