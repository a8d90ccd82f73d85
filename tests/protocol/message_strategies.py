"""Hypothesis strategies derived from the message declarations themselves.

``message_values(message, version)`` draws a value for every field of ``message`` in
``version``: random values of the field's wire type for the fields on the wire, and the declared
default for fields the version does not carry (which is what parsing yields for them).
"""

from __future__ import annotations

from hypothesis import strategies as st

from tmq.protocol.schema import BOOL, INT8, INT16, INT32, INT64, Array, Field, Message

_SCALARS = {
    INT8: st.integers(-(2**7), 2**7 - 1),
    INT16: st.integers(-(2**15), 2**15 - 1),
    INT32: st.integers(-(2**31), 2**31 - 1),
    INT64: st.integers(-(2**63), 2**63 - 1),
    BOOL: st.booleans(),
}
_TEXT = st.text(max_size=12)
_BYTES = st.binary(max_size=40)
_TAGS = st.dictionaries(st.integers(0, 300), st.binary(max_size=8), max_size=2)


def _element(kind, version: int, flexible: bool):
    if isinstance(kind, tuple):
        return _struct(kind, version, flexible)
    if kind in _SCALARS:
        return _SCALARS[kind]
    return _TEXT if kind.name == "string" else _BYTES


def _field(field: Field, version: int, flexible: bool):
    kind = field.type
    if isinstance(kind, Array):
        values = st.lists(_element(kind.element, version, flexible), max_size=3)
    else:
        values = _element(kind, version, flexible)
    if field.nullable_in(version):
        values = st.none() | values
    return values


def _struct(fields: tuple[Field, ...], version: int, flexible: bool):
    drawn = {}
    for field in fields:
        if field.present_in(version):
            drawn[field.name] = _field(field, version, flexible)
        else:
            drawn[field.name] = st.just(field.default_value())
    if flexible:
        drawn["tagged_fields"] = _TAGS
    return st.fixed_dictionaries(drawn)


def message_values(message: Message, version: int):
    """A strategy for complete values of ``message`` at ``version``."""
    return _struct(message.fields, version, message.is_flexible(version))
