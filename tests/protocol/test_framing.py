"""FrameDecoder: chunking-independent, bounded, and strict on the size prefix."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.protocol.framing import FrameDecoder, FrameTooLarge, encode_frame


def _framed(payloads):
    return b"".join(b"".join(encode_frame(p)) for p in payloads)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


class FrameDecoderTests:
    """Properties of the sans-IO frame splitter."""

    @given(
        payloads=st.lists(st.binary(max_size=300), max_size=8),
        cuts=st.lists(st.integers(min_value=0), max_size=20),
    )
    def test_output_is_independent_of_chunking(self, payloads, cuts):
        """However the stream is cut into reads, the same frames come out in order."""
        stream = _framed(payloads)
        decoder = FrameDecoder()
        frames = []
        for piece in _split(stream, cuts):
            frames.extend(decoder.feed(piece))
        assert frames == payloads
        assert decoder.buffered_bytes == 0

    def test_every_split_point_of_two_frames(self):
        """Splitting two frames at every byte boundary yields them both."""
        stream = _framed([b"hello", b"kafka!"])
        for cut in range(len(stream) + 1):
            decoder = FrameDecoder()
            assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == [b"hello", b"kafka!"]

    def test_oversized_prefix_is_rejected_before_buffering(self):
        """A size above the bound raises at once, from the 4-byte prefix alone."""
        decoder = FrameDecoder(max_frame_bytes=1024)
        with pytest.raises(FrameTooLarge):
            decoder.feed(struct.pack(">i", 1025))

    def test_negative_prefix_is_rejected(self):
        """A negative size is a protocol error."""
        with pytest.raises(FrameTooLarge):
            FrameDecoder().feed(b"\xff\xff\xff\xfe")

    def test_frame_at_the_bound_is_accepted(self):
        """A frame of exactly max_frame_bytes is delivered."""
        decoder = FrameDecoder(max_frame_bytes=16)
        assert decoder.feed(_framed([b"x" * 16])) == [b"x" * 16]

    @given(data=st.binary(max_size=200), bound=st.integers(0, 64))
    def test_random_bytes_never_exceed_the_bound(self, data, bound):
        """Random input either raises FrameTooLarge or leaves at most one partial frame
        (4-byte prefix plus at most ``bound`` bytes) buffered."""
        decoder = FrameDecoder(max_frame_bytes=bound)
        try:
            decoder.feed(data)
        except FrameTooLarge:
            return
        assert decoder.buffered_bytes <= 4 + bound

    def test_encode_frame_does_not_copy_parts(self):
        """encode_frame returns the size prefix followed by the very same part objects."""
        part = memoryview(b"abc")
        chunks = encode_frame(b"hd", part)
        assert chunks[0] == struct.pack(">i", 5)
        assert chunks[2] is part
