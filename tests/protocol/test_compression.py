"""Compression codecs: round trips, Kafka's framings, bounded and fail-safe decompression."""

from __future__ import annotations

import contextlib
import gzip
import struct
import tracemalloc

import cramjam
import lz4.frame
import pytest
import snappy
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import codec as kafka_codec

from tmq.protocol.compression import DEFAULT_MAX_DECOMPRESSED_BYTES, Codec, compress, decompress
from tmq.protocol.errors import ProtocolError

XERIAL_HEADER = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
COMPRESSED_CODECS = [Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD]
ALL_CODECS = pytest.mark.parametrize("codec", list(Codec), ids=lambda codec: codec.name)
COMPRESSED = pytest.mark.parametrize("codec", COMPRESSED_CODECS, ids=lambda codec: codec.name)

# Repetitive text, the shape of telemetry payloads: compressible, but not trivially.
SAMPLE = b"".join(
    b'{"gpu":%d,"util":%d,"temp":%d,"power":%d.%d}\n' % (i % 8, i * 7 % 101, 30 + i % 50, i, i % 10)
    for i in range(3000)
)


def xerial_blocks(data: bytes) -> list[bytes]:
    """Split a xerial snappy stream into its raw blocks (the test's own reading of the format)."""
    assert data.startswith(XERIAL_HEADER)
    blocks = []
    position = len(XERIAL_HEADER)
    while position < len(data):
        (length,) = struct.unpack_from(">i", data, position)
        blocks.append(data[position + 4 : position + 4 + length])
        position += 4 + length
    assert position == len(data)
    return blocks


class CodecTests:
    def test_codec_numbers_are_the_attribute_bits(self):
        """Codec values are the ids Kafka stores in attribute bits 0-2."""
        assert [(codec.name, int(codec)) for codec in Codec] == [
            ("NONE", 0),
            ("GZIP", 1),
            ("SNAPPY", 2),
            ("LZ4", 3),
            ("ZSTD", 4),
        ]

    @ALL_CODECS
    @settings(deadline=None)
    @given(data=st.binary(max_size=70_000))
    def test_round_trip(self, codec, data):
        """decompress(compress(data)) == data for every codec, including blocks past 32 KiB."""
        assert decompress(codec, compress(codec, data)) == data

    @ALL_CODECS
    def test_round_trip_of_sample_and_buffer_types(self, codec):
        """Telemetry-like data round-trips, from bytes, bytearray and memoryview alike."""
        compressed = compress(codec, bytearray(SAMPLE))
        assert compress(codec, memoryview(SAMPLE)) == compressed
        assert decompress(codec, bytearray(compressed)) == SAMPLE
        assert decompress(codec, memoryview(compressed)) == SAMPLE
        assert isinstance(decompress(codec, compressed), bytes)

    @COMPRESSED
    def test_compresses(self, codec):
        """Every codec makes the telemetry-like sample much smaller."""
        assert len(compress(codec, SAMPLE)) < len(SAMPLE) // 3

    def test_compress_refuses_unknown_codec(self):
        """compress raises ValueError for a codec number that is not a Codec."""
        with pytest.raises(ValueError):
            compress(5, b"data")


class SnappyFramingTests:
    def test_writes_xerial_framing_in_32_kib_blocks(self):
        """Snappy output is the xerial header, then length-prefixed blocks of <= 32 KiB input."""
        data = SAMPLE * 2
        compressed = compress(Codec.SNAPPY, data)
        blocks = xerial_blocks(compressed)
        assert len(blocks) == -(-len(data) // 32768)
        assert b"".join(cramjam.snappy.decompress_raw(block) for block in blocks) == data

    def test_reads_a_raw_snappy_block(self):
        """A plain raw snappy block, without xerial framing, is accepted."""
        assert decompress(Codec.SNAPPY, snappy.compress(SAMPLE)) == SAMPLE

    def test_ignores_xerial_version_fields(self):
        """Version fields written little-endian (as some producers do) do not matter."""
        compressed = compress(Codec.SNAPPY, SAMPLE)
        little_endian = compressed[:8] + struct.pack("<ii", 1, 1) + compressed[16:]
        assert decompress(Codec.SNAPPY, little_endian) == SAMPLE

    def test_empty_input_is_a_bare_header(self):
        """No input gives the 16-byte header alone, which decompresses to nothing."""
        assert compress(Codec.SNAPPY, b"") == XERIAL_HEADER
        assert decompress(Codec.SNAPPY, XERIAL_HEADER) == b""

    @pytest.mark.parametrize(
        "tail",
        [b"\x00\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x09abc", b"\x00\x00\x00\x00"],
        ids=["short-length", "negative-length", "length-past-end", "empty-block"],
    )
    def test_bad_xerial_block_is_a_protocol_error(self, tail):
        """A truncated, negative, overlong or empty xerial block raises ProtocolError."""
        with pytest.raises(ProtocolError):
            decompress(Codec.SNAPPY, compress(Codec.SNAPPY, b"abc") + tail)


class KafkaPythonCodecTests:
    """kafka-python 3.0.12's ``kafka.codec`` reads what tmq writes, and the reverse."""

    @pytest.mark.parametrize(
        ("codec", "encode"),
        [
            (Codec.GZIP, kafka_codec.gzip_encode),
            (Codec.SNAPPY, kafka_codec.snappy_encode),
            (Codec.LZ4, kafka_codec.lz4_encode),
            (Codec.ZSTD, kafka_codec.zstd_encode),
        ],
        ids=["GZIP", "SNAPPY", "LZ4", "ZSTD"],
    )
    def test_tmq_reads_kafka_python(self, codec, encode):
        """Data compressed by kafka.codec decompresses with tmq."""
        assert decompress(codec, bytes(encode(SAMPLE * 2))) == SAMPLE * 2

    @pytest.mark.parametrize(
        ("codec", "decode"),
        [
            (Codec.GZIP, kafka_codec.gzip_decode),
            (Codec.SNAPPY, kafka_codec.snappy_decode),
            (Codec.LZ4, kafka_codec.lz4_decode),
            (Codec.ZSTD, kafka_codec.zstd_decode),
        ],
        ids=["GZIP", "SNAPPY", "LZ4", "ZSTD"],
    )
    def test_kafka_python_reads_tmq(self, codec, decode):
        """Data compressed by tmq decompresses with kafka.codec."""
        assert decode(compress(codec, SAMPLE * 2)) == SAMPLE * 2

    def test_snappy_framing_matches_kafka_python(self):
        """tmq's xerial stream has kafka-python's header and the same block boundaries."""
        ours = xerial_blocks(compress(Codec.SNAPPY, SAMPLE * 2))
        theirs = xerial_blocks(bytes(kafka_codec.snappy_encode(SAMPLE * 2)))
        assert [len(cramjam.snappy.decompress_raw(block)) for block in ours] == [
            len(cramjam.snappy.decompress_raw(block)) for block in theirs
        ]


class OtherImplementationsTests:
    def test_gzip_is_rfc_1952_and_reads_concatenated_members(self):
        """The stdlib reads tmq's gzip, and tmq reads a two-member gzip stream as one."""
        assert gzip.decompress(compress(Codec.GZIP, SAMPLE)) == SAMPLE
        two_members = gzip.compress(b"first ") + gzip.compress(b"second")
        assert decompress(Codec.GZIP, two_members) == b"first second"

    def test_lz4_frame_has_independent_blocks(self):
        """LZ4 output sets the block-independence flag Kafka's Java reader requires."""
        compressed = compress(Codec.LZ4, SAMPLE)
        assert compressed[:4] == b"\x04\x22\x4d\x18"  # frame magic 0x184D2204
        flags = compressed[4]
        assert flags >> 6 == 1  # version
        assert flags & 0x20  # block independence
        assert lz4.frame.decompress(compressed) == SAMPLE

    def test_lz4_reads_linked_blocks(self):
        """A frame with linked blocks (what lz4 writes by default) is accepted too."""
        linked = lz4.frame.compress(SAMPLE * 40, block_linked=True)
        assert decompress(Codec.LZ4, linked) == SAMPLE * 40

    def test_zstd_interoperates_and_reads_several_frames(self):
        """zstandard reads tmq's zstd; tmq reads two concatenated frames as one stream."""
        assert zstandard.ZstdDecompressor().decompress(compress(Codec.ZSTD, SAMPLE)) == SAMPLE
        compressor = zstandard.ZstdCompressor()
        two_frames = compressor.compress(b"first ") + compressor.compress(b"second")
        assert decompress(Codec.ZSTD, two_frames) == b"first second"


class DecompressionBoundTests:
    def test_default_bound(self):
        """The default bound is 256 MiB."""
        assert DEFAULT_MAX_DECOMPRESSED_BYTES == 256 * 1024 * 1024

    @ALL_CODECS
    def test_output_of_exactly_max_bytes_is_accepted(self, codec):
        """Output as large as max_bytes is returned; one byte less of bound is an error."""
        compressed = compress(codec, SAMPLE)
        assert decompress(codec, compressed, max_bytes=len(SAMPLE)) == SAMPLE
        with pytest.raises(ProtocolError):
            decompress(codec, compressed, max_bytes=len(SAMPLE) - 1)

    @COMPRESSED
    def test_output_much_larger_than_input_is_decompressed(self, codec):
        """A 4 MiB run of zeros, compressed far beyond the first output guess, comes back."""
        data = bytes(4 * 1024 * 1024)
        assert decompress(codec, compress(codec, data)) == data

    @COMPRESSED
    def test_bomb_is_refused_with_bounded_memory(self, codec):
        """32 MiB of zeros against a 1 MiB bound: ProtocolError, and Python memory stays small."""
        bomb = compress(codec, bytes(32 * 1024 * 1024))
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolError, match="1048576"):
                decompress(codec, bomb, max_bytes=1024 * 1024)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 3 * 1024 * 1024


class DecompressionFuzzTests:
    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(codec=st.integers(min_value=0, max_value=7), data=st.binary(max_size=300))
    def test_random_bytes_raise_only_protocol_error(self, codec, data):
        """Arbitrary bytes under any codec number decompress or raise ProtocolError."""
        with contextlib.suppress(ProtocolError):
            decompress(codec, data, max_bytes=1 << 20)

    @given(codec=st.integers(min_value=5, max_value=7))
    def test_unknown_codec_is_a_protocol_error(self, codec):
        """Codec numbers 5-7 (free attribute values) raise ProtocolError."""
        with pytest.raises(ProtocolError, match="unknown compression codec"):
            decompress(codec, b"data")

    @COMPRESSED
    @given(data=st.data())
    def test_mutated_and_truncated_streams_raise_only_protocol_error(self, codec, data):
        """A stream with a byte changed, or cut short, decompresses or raises ProtocolError."""
        compressed = bytearray(compress(codec, SAMPLE[:2000]))
        index = data.draw(st.integers(min_value=0, max_value=len(compressed) - 1))
        compressed[index] ^= data.draw(st.integers(min_value=1, max_value=255))
        cut = data.draw(st.integers(min_value=0, max_value=len(compressed)))
        for candidate in (bytes(compressed), compress(codec, SAMPLE[:2000])[:cut]):
            with contextlib.suppress(ProtocolError):
                decompress(codec, candidate, max_bytes=1 << 20)

    @COMPRESSED
    def test_truncated_stream_is_a_protocol_error(self, codec):
        """Dropping the last byte of a stream with checksums or framing is detected."""
        compressed = compress(codec, SAMPLE)
        if codec is Codec.ZSTD:
            compressed = compressed[: len(compressed) // 2]
        with pytest.raises(ProtocolError):
            decompress(codec, compressed[:-1])
