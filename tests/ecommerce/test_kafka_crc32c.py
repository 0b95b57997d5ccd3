"""The relay's and the consumer's kafka-python checksums record batches with the native CRC32C."""
import pytest
from kafka.record import default_records, util

pytestmark = pytest.mark.unit


def test_record_batches_are_checksummed_by_the_native_crc32c_package():
    # kafka-python falls back to a pure-Python CRC32C (several times slower
    # per batch) when the optional `crc32c` package is missing: requirements.txt pins it.
    assert util.crc32c_c is not None
    # The function the record batch builder and reader call is bound to it.
    assert default_records.calc_crc32c is util.calc_crc32c
    assert util.calc_crc32c.__defaults__ == (util.crc32c_c,)
    assert util.calc_crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
