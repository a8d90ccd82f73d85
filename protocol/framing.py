"""Kafka framing: ``INT32 size`` followed by ``size`` bytes (header and body).

``FrameDecoder`` is sans-IO: feed it whatever bytes the transport delivered and it returns the
complete frames, in order, without their length prefix. The size prefix is checked against
``max_frame_bytes`` before anything is buffered for that frame, so a hostile prefix can never
make the decoder hold more than ``max_frame_bytes`` plus one read's worth of bytes.
"""

from __future__ import annotations

import struct

from .errors import ProtocolError

__all__ = ["MAX_FRAME_BYTES", "FrameDecoder", "FrameTooLarge", "encode_frame"]

#: Default bound on one frame: Kafka's ``socket.request.max.bytes`` (100 MiB).
MAX_FRAME_BYTES = 100 * 1024 * 1024

_SIZE = struct.Struct(">i")


class FrameTooLarge(ProtocolError):
    """A length prefix above the decoder's bound (or negative)."""


class FrameDecoder:
    """Split a byte stream into Kafka frames.

    Not thread-safe; after it raises, the stream is out of sync and the decoder must be
    dropped (the connection closed).

    :param max_frame_bytes: the largest frame accepted, excluding its 4-byte prefix.
    """

    __slots__ = ("_buffer", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES):
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every frame it completes (possibly none).

        :raises FrameTooLarge: a size prefix is negative or above ``max_frame_bytes``.
        """
        buffer = self._buffer
        buffer += data
        frames = []
        position = 0
        available = len(buffer)
        view = memoryview(buffer)
        while available - position >= 4:
            (size,) = _SIZE.unpack_from(buffer, position)
            if size < 0 or size > self.max_frame_bytes:
                view.release()
                raise FrameTooLarge(f"frame size {size} outside 0..{self.max_frame_bytes} bytes")
            end = position + 4 + size
            if end > available:
                break
            frames.append(bytes(view[position + 4 : end]))
            position = end
        view.release()
        if position:
            del buffer[:position]
        return frames


def encode_frame(*parts: bytes | bytearray | memoryview) -> list[bytes | bytearray | memoryview]:
    """Prefix ``parts`` with their total size; returns a list for ``transport.writeSequence``.

    The parts are not copied.
    """
    size = sum(memoryview(p).nbytes for p in parts)
    return [_SIZE.pack(size), *parts]
