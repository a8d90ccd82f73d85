"""CRC-32C (Castagnoli), the checksum of a Kafka RecordBatch v2.

``crc32c(data, value=0)`` returns the CRC-32C of ``data`` as an unsigned 32-bit integer. Passing
the result of an earlier call as ``value`` continues that checksum, so
``crc32c(b, crc32c(a)) == crc32c(a + b)``.

The fast path is the C extension of the ``google-crc32c`` package (hardware CRC instructions where
the CPU has them). That extension accepts only ``bytes``: a ``bytearray`` or ``memoryview`` is
copied into ``bytes`` once before it is checksummed. When the extension cannot be imported,
``crc32c`` is the pure-Python ``crc32c_python``, which gives the same results far more slowly.
Both are exported so tests can hold them to each other.
"""

from __future__ import annotations

__all__ = ["CRC32C_ACCELERATED", "crc32c", "crc32c_python"]

_POLYNOMIAL = 0x82F63B78  # Castagnoli polynomial 0x1EDC6F41, bit-reflected
_MASK = 0xFFFFFFFF

Buffer = bytes | bytearray | memoryview


def _build_table() -> tuple[int, ...]:
    """Return the 256-entry lookup table of the reflected byte-at-a-time algorithm."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLYNOMIAL if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _build_table()


def crc32c_python(data: Buffer, value: int = 0) -> int:
    """Return the CRC-32C of ``data``, continuing from the checksum ``value``, in pure Python.

    :param data: the bytes to checksum (any bytes-like object of unsigned bytes).
    :param value: the CRC-32C of the bytes before ``data``; 0 starts a new checksum.
    :returns: the checksum, 0 <= crc < 2**32.
    """
    table = _TABLE
    crc = value ^ _MASK
    for byte in memoryview(data).cast("B"):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _MASK


try:
    # The C module itself: importing ``google_crc32c`` would fall back to that package's own pure
    # Python code and emit a RuntimeWarning at import time.
    from google_crc32c.cext import extend as _extend
except ImportError:
    _extend = None

CRC32C_ACCELERATED: bool = _extend is not None
"""True when ``crc32c`` uses the ``google-crc32c`` C extension."""


if _extend is None:
    crc32c = crc32c_python
else:

    def crc32c(data: Buffer, value: int = 0) -> int:
        """Return the CRC-32C of ``data``, continuing from the checksum ``value``.

        :param data: the bytes to checksum. A ``bytearray`` or ``memoryview`` is copied to
            ``bytes`` first (the C extension accepts nothing else).
        :param value: the CRC-32C of the bytes before ``data``; 0 starts a new checksum.
        :returns: the checksum, 0 <= crc < 2**32.
        """
        if type(data) is not bytes:
            data = bytes(data)
        return _extend(value, data)
