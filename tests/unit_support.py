"""What tests marked `unit` import: overrides of the suite's autouse resets.

The resets in tests/conftest.py wipe state in Redis and the producer; a unit
test touches neither, so it takes these no-op fixtures of the same names
(`from tests.unit_support import _clean_cache, _clean_shared_state`) and needs no service.
"""
import pytest


@pytest.fixture
def _clean_cache():
    yield


@pytest.fixture
def _clean_shared_state():
    yield
