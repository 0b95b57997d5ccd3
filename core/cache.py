"""Django's Redis cache backend, minus a new `redis.Redis` client for every cache call.

Django's `RedisCacheClient.get_client()` builds a `redis.Redis` around its
connection pool on every get, set and delete. redis-py's constructor fills a
table of about 170 response callbacks each time: a profile of a checkout
showed a quarter of a millisecond of CPU per cache call (a checkout makes
several: the throttle's read and write, the cart cache's invalidations). The
client holds no per-call state (connections come from the pool), so this
keeps one per pool. Django's cache handler already gives every thread its own
backend instance, so nothing here is shared between threads.
"""
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis import Redis


class ReusedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Redis] = {}

    def get_client(self, key: str | None = None, *, write: bool = False) -> Redis:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class ReusedClientRedisCache(RedisCache):
    """`django.core.cache.backends.redis.RedisCache` with one client per connection pool."""

    def __init__(self, server: str, params: dict) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient
