"""CRC-32C: known vectors; the accelerated and pure-Python implementations held to each other."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.protocol.crc32c import CRC32C_ACCELERATED, crc32c, crc32c_python

IMPLEMENTATIONS = pytest.mark.parametrize(
    "implementation", [crc32c, crc32c_python], ids=["crc32c", "crc32c_python"]
)


class Crc32cTests:
    @IMPLEMENTATIONS
    def test_check_value(self, implementation):
        """The CRC-32C check value: b"123456789" gives 0xE3069283."""
        assert implementation(b"123456789") == 0xE3069283

    @IMPLEMENTATIONS
    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            (b"", 0),
            (bytes(32), 0x8A9136AA),
            (b"\xff" * 32, 0x62A8AB43),
            (bytes(range(32)), 0x46DD794E),
        ],
    )
    def test_rfc_3720_vectors(self, implementation, data, expected):
        """The iSCSI test vectors of RFC 3720 (B.4), and 0 for no bytes."""
        assert implementation(data) == expected

    @IMPLEMENTATIONS
    def test_accepts_bytearray_and_memoryview(self, implementation):
        """A bytearray and a memoryview slice give the same CRC as the equivalent bytes."""
        assert implementation(bytearray(b"123456789")) == 0xE3069283
        assert implementation(memoryview(b"xx123456789yy")[2:-2]) == 0xE3069283

    def test_uses_google_crc32c_when_installed(self):
        """The dev environment has google-crc32c, so the accelerated implementation is active."""
        assert CRC32C_ACCELERATED
        assert crc32c is not crc32c_python

    @given(st.binary(max_size=2048))
    def test_implementations_agree(self, data):
        """The accelerated and pure-Python implementations agree on any bytes."""
        assert crc32c(data) == crc32c_python(data)

    @given(st.binary(max_size=512), st.binary(max_size=512))
    def test_chaining_equals_one_pass(self, first, second):
        """Passing a CRC as ``value`` continues it: crc(b, crc(a)) == crc(a + b), both ways."""
        whole = crc32c_python(first + second)
        assert crc32c(second, crc32c(first)) == whole
        assert crc32c_python(second, crc32c_python(first)) == whole
        assert crc32c(second, crc32c_python(first)) == whole
