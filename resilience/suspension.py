"""Stop asking a dependency for a while after it failed, per process.

For optional calls (a cache read, a wake-up signal) a failure only costs
latency; skipping the dependency for a few seconds keeps a dead one from
adding its timeout to every request.
"""
import time
from collections.abc import Callable


class Suspension:
    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._until = 0.0

    def active(self) -> bool:
        return self.clock() < self._until

    def trip(self) -> None:
        self._until = self.clock() + self.seconds

    def reset(self) -> None:
        self._until = 0.0
