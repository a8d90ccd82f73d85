"""Compression codecs of a Kafka RecordBatch: the records section is compressed as one blob.

``Codec`` numbers the codecs as bits 0-2 of the batch attributes do. ``compress(codec, data)``
and ``decompress(codec, data)`` use ``cramjam`` and write what Kafka's Java client writes:

- GZIP (1): a gzip stream (RFC 1952); concatenated members are read as one stream.
- SNAPPY (2): xerial framing, as Java's ``SnappyOutputStream`` and kafka-python write it::

      header: b"\\x82SNAPPY\\x00" + INT32 version (1) + INT32 compatible version (1)   16 bytes
      blocks: INT32 length + that many bytes of raw snappy, each holding <= 32 KiB of input

  ``decompress`` also accepts a single raw snappy block (no framing), which some clients send.
  The two cannot be confused: a raw block never starts with the xerial magic (it would begin with
  a copy element, which a raw block cannot). Like kafka-python, the reader ignores the version
  fields, since some producers write them little-endian.
- LZ4 (3): the LZ4 frame format with *independent* blocks. Kafka's Java reader rejects frames
  whose blocks are linked ("Dependent block stream is unsupported"), so ``compress`` never writes
  them; ``decompress`` accepts either.
- ZSTD (4): a zstd stream at level 3 (Kafka's default ``compression.zstd.level``); several frames
  are read as one stream.

Contracts:

- ``decompress`` raises ``ProtocolError``, and only that, for corrupt or truncated input, an
  unknown codec number, or output larger than ``max_bytes``. It stops writing output at
  ``max_bytes``, so a decompression bomb costs at most about twice ``max_bytes`` of memory (the
  output buffer, and the ``bytes`` returned).
- ``compress`` raises ``ValueError`` for an unknown codec number; its input is trusted.
- Both accept ``bytes``, ``bytearray`` or ``memoryview`` and return ``bytes``.
"""

from __future__ import annotations

import enum
import struct

import cramjam

from .errors import ProtocolError

__all__ = ["DEFAULT_MAX_DECOMPRESSED_BYTES", "Codec", "compress", "decompress"]

Buffer = bytes | bytearray | memoryview

DEFAULT_MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024
"""Default bound on the output of ``decompress``: larger output is a ``ProtocolError``."""


class Codec(enum.IntEnum):
    """Compression codec ids, as stored in bits 0-2 of the RecordBatch attributes."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)  # version 1, compatible with 1
_XERIAL_BLOCK_LENGTH = struct.Struct(">i")
_XERIAL_BLOCK_INPUT = 32 * 1024  # uncompressed bytes per block, xerial's default
_ZSTD_LEVEL = 3

# cramjam reports "output buffer full" with the message of Rust's io::ErrorKind::WriteZero.
_BUFFER_FULL = "failed to write whole buffer"
_FIRST_GUESS_MIN = 64 * 1024  # smallest first output buffer
_FIRST_GUESS_RATIO = 8  # first output buffer: this many times the compressed size
_GROWTH = 4  # each retry multiplies the output buffer by this
_BOUNDED_MODULES = {Codec.GZIP: cramjam.gzip, Codec.LZ4: cramjam.lz4, Codec.ZSTD: cramjam.zstd}


def _lz4_compress(data: Buffer) -> bytes:
    """Return ``data`` as an LZ4 frame with independent blocks and no content checksum."""
    compressor = cramjam.lz4.Compressor(content_checksum=False, block_linked=False)
    compressor.compress(data if type(data) is bytes else bytes(data))  # it takes only bytes
    return bytes(compressor.finish())


def _snappy_compress(data: Buffer) -> bytes:
    """Return ``data`` as a xerial-framed snappy stream (32 KiB of input per block)."""
    view = memoryview(data).cast("B")
    parts = [_XERIAL_HEADER]
    for start in range(0, len(view), _XERIAL_BLOCK_INPUT):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK_INPUT]))
        parts.append(_XERIAL_BLOCK_LENGTH.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def compress(codec: int, data: Buffer) -> bytes:
    """Return ``data`` compressed with ``codec``, in the framing Kafka's Java client writes.

    :param codec: a ``Codec`` (or its number); ``Codec.NONE`` returns ``data`` unchanged.
    :param data: the uncompressed bytes (a records section).
    :raises ValueError: ``codec`` is not a ``Codec`` number.
    """
    codec = Codec(codec)
    if codec is Codec.NONE:
        return bytes(data)
    if codec is Codec.GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec is Codec.SNAPPY:
        return _snappy_compress(data)
    if codec is Codec.LZ4:
        return _lz4_compress(data)
    return bytes(cramjam.zstd.compress(data, level=_ZSTD_LEVEL))


def _snappy_raw_decompress(block: Buffer, budget: int, max_bytes: int) -> bytes:
    """Return one raw snappy block decompressed, refusing output larger than ``budget``.

    The block states its uncompressed length up front, so that is checked before any output is
    allocated. ``max_bytes`` is the limit the budget is part of, for the error message.
    """
    try:
        length = cramjam.snappy.decompress_raw_len(block)
        if length > budget:
            raise ProtocolError(f"snappy data decompresses to more than {max_bytes} bytes")
        return bytes(cramjam.snappy.decompress_raw(block))
    except cramjam.DecompressionError as error:
        raise ProtocolError(f"corrupt snappy data: {error}") from None


def _snappy_decompress(data: Buffer, max_bytes: int) -> bytes:
    """Return xerial-framed or raw snappy ``data`` decompressed (see the module docstring)."""
    view = memoryview(data).cast("B")
    if len(view) < len(_XERIAL_HEADER) or view[: len(_XERIAL_MAGIC)] != _XERIAL_MAGIC:
        return _snappy_raw_decompress(view, max_bytes, max_bytes)
    parts = []
    budget = max_bytes
    position = len(_XERIAL_HEADER)
    end = len(view)
    while position < end:
        if end - position < _XERIAL_BLOCK_LENGTH.size:
            raise ProtocolError("truncated xerial snappy block length")
        (length,) = _XERIAL_BLOCK_LENGTH.unpack_from(view, position)
        position += _XERIAL_BLOCK_LENGTH.size
        if length < 0 or length > end - position:
            raise ProtocolError(f"xerial snappy block length {length} is out of bounds")
        block = _snappy_raw_decompress(view[position : position + length], budget, max_bytes)
        budget -= len(block)
        parts.append(block)
        position += length
    return b"".join(parts)


def _bounded_decompress(codec: Codec, data: Buffer, max_bytes: int) -> bytes:
    """Return ``data`` decompressed with cramjam's ``decompress_into`` into a bounded buffer.

    The first buffer is a guess from the compressed size. When the output does not fit, the
    buffer grows by ``_GROWTH`` up to ``max_bytes`` and decompression starts again, so the
    buffer never exceeds ``max_bytes`` and the total work is a small multiple of the final
    attempt. cramjam stops with a "buffer full" error as soon as the output does not fit.
    """
    module = _BOUNDED_MODULES[codec]
    size = min(max_bytes, max(_FIRST_GUESS_MIN, _FIRST_GUESS_RATIO * len(data)))
    while True:
        output = bytearray(size)
        try:
            written = module.decompress_into(data, output)
        except cramjam.DecompressionError as error:
            if _BUFFER_FULL not in str(error):
                raise ProtocolError(f"corrupt {codec.name.lower()} data: {error}") from None
            if size >= max_bytes:
                raise ProtocolError(
                    f"{codec.name.lower()} data decompresses to more than {max_bytes} bytes"
                ) from None
            size = min(max_bytes, size * _GROWTH)
            continue
        return bytes(memoryview(output)[:written])


def decompress(codec: int, data: Buffer, max_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES) -> bytes:
    """Return ``data`` decompressed with ``codec``.

    :param codec: a ``Codec`` number, e.g. ``attributes & 0x07`` of a batch.
    :param data: the compressed bytes.
    :param max_bytes: the largest output accepted.
    :raises ProtocolError: unknown codec, corrupt or truncated data, or output over
        ``max_bytes``.
    """
    try:
        codec = Codec(codec)
    except ValueError:
        raise ProtocolError(f"unknown compression codec {codec}") from None
    if codec is Codec.NONE:
        if len(data) > max_bytes:
            raise ProtocolError(f"{len(data)} bytes exceed the limit of {max_bytes}")
        return bytes(data)
    if codec is Codec.SNAPPY:
        return _snappy_decompress(data, max_bytes)
    return _bounded_decompress(codec, data, max_bytes)
