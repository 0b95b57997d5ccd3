"""The platform's Redis replies are parsed by hiredis, redis-py's C parser."""
import pytest
import redis
from django.core.cache import cache
from redis._parsers import _HiredisParser

pytestmark = pytest.mark.unit


def test_the_cache_and_every_default_redis_client_parse_replies_with_hiredis():
    # redis-py falls back to its pure-Python parser, silently, when the
    # optional `hiredis` package is missing: requirements.txt pins it.
    assert redis.connection.DefaultParser is _HiredisParser
    pool = cache._cache.get_client(write=True).connection_pool  # the cart cache, the throttles
    assert isinstance(pool.connection_class(**pool.connection_kwargs)._parser, _HiredisParser)
