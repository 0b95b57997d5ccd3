"""A relay run: drains (outbox/relay.py) between the wake-up that starts it and the flag it releases.

The run drains until the outbox has no due work, releases the wake-up flag
and drains once more, so a commit after the release enqueues the next run
and none before it is left behind (outbox/trigger.py). A run that published
may stay for the commits that follow, woken by their nudges instead of a
task each; out of time with work left, it hands over to a successor.
"""
import time
from contextlib import nullcontext

from outbox.floor import outbox_claim_floor, outbox_claim_floor_note
from outbox.relay import outbox_drain
from outbox.trigger import (
    Lingering,
    outbox_relay_flag_clear,
    outbox_relay_flag_release,
    outbox_relay_flag_take,
    outbox_relay_hand_over,
    outbox_relay_linger,
)


def outbox_relay_run(*, batch_size: int, time_budget_seconds: float, linger_seconds: float = 0.0) -> None:
    """Drain until idle, release the wake-up flag, and drain once more (see outbox/trigger.py).

    With `linger_seconds`, a run that published rows stays while new ones keep
    coming (each commit nudges it) and ends after that long without one.
    """
    with outbox_relay_linger() if linger_seconds > 0 else nullcontext() as lingering:
        _relay_run(batch_size, time.monotonic() + time_budget_seconds, lingering, linger_seconds)


def _relay_run(batch_size: int, deadline: float, lingering: Lingering | None, linger_seconds: float) -> None:
    start = outbox_claim_floor()
    published = False
    while True:
        remaining = deadline - time.monotonic()
        # A run that stays drains again from its start on the next nudge (a
        # commit its drain could not see nudges after the drain's claims) and
        # ends with the final drain below, which does rescan: its drains need
        # not end on a new pass's empty claim (a transaction, a claim and a
        # breaker read per nudge).
        report = outbox_drain(
            batch_size=batch_size, time_budget_seconds=max(remaining, 0.0), start=start, rescan=lingering is None
        )
        if report.breaker_open:
            outbox_relay_flag_clear()  # the sweep retries once the breaker lets it
            return
        if time.monotonic() >= deadline:
            # Out of time with work left: hand over to a fresh run rather than
            # leave rows waiting for the sweep.
            outbox_relay_hand_over()
            return
        published = published or report.published > 0
        if lingering is not None and published:
            # Its start moves up with the floor, or each drain of a long stay
            # would walk the index entries of every row the stay published.
            outbox_claim_floor_note(start)
            # The nudges were cleared before this drain's claims: a commit they missed has nudged since.
            if lingering.wait(min(linger_seconds, deadline - time.monotonic())):
                start = outbox_claim_floor()
                continue
        elif report.published:
            continue
        if lingering is not None:
            outbox_relay_flag_clear()
        elif not outbox_relay_flag_release():
            return  # another run stays and holds the flag: the commits that follow nudge it
        final = outbox_drain(
            batch_size=batch_size, time_budget_seconds=max(deadline - time.monotonic(), 0.0), start=start
        )
        if not final.published:
            outbox_claim_floor_note(start)
            return
        if not outbox_relay_flag_take():
            return  # a commit after the clear already enqueued the next run
