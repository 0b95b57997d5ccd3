"""The nemesis's schedule: a pure function of the seed, the kinds and the window."""
import pytest

from ops.soak.nemesis import FAULT_KINDS, schedule_draw, schedule_overlapping
from tests.ops.platform import SHORT_SOAK
from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401 (no Redis needed)

pytestmark = pytest.mark.unit

DEFAULT_KINDS = list(FAULT_KINDS.values())
HOUR = (10.0, 3600.0 - 180.0)


def test_the_same_seed_draws_the_same_schedule_whatever_the_order_of_the_kinds():
    first = schedule_draw(seed=42, kinds=DEFAULT_KINDS, window=HOUR)
    again = schedule_draw(seed=42, kinds=list(reversed(DEFAULT_KINDS)), window=HOUR)

    assert first == again
    assert len(first) > 20


def test_another_seed_draws_another_schedule():
    assert schedule_draw(seed=42, kinds=DEFAULT_KINDS, window=HOUR) != schedule_draw(seed=43, kinds=DEFAULT_KINDS, window=HOUR)


@pytest.mark.parametrize("seed", range(1, 6))
def test_faults_of_one_resource_never_overlap_and_all_heal_before_the_quiet_period(seed):
    schedule = schedule_draw(seed=seed, kinds=DEFAULT_KINDS, window=HOUR)

    spans = [(entry, entry.span(FAULT_KINDS[entry.kind])) for entry in schedule]
    for index, (entry, (start, end)) in enumerate(spans):
        assert HOUR[0] < start and end <= HOUR[1]
        assert 10.0 <= (entry.at - spans[index - 1][0].at if index else 10.0) <= 60.0  # a fault every 10-60 s
        for other, (other_start, other_end) in spans[index + 1 :]:
            shared = FAULT_KINDS[entry.kind].resources & FAULT_KINDS[other.kind].resources
            assert not (shared and other_start < end and start < other_end), (entry, other)


@pytest.mark.parametrize("seed", range(1, 6))
def test_an_hour_at_the_default_pace_has_the_faults_the_certificate_asks_for(seed):
    # The 60-minute soak: at least 60 faults, at least 10 of them overlapping.
    schedule = schedule_draw(seed=seed, kinds=DEFAULT_KINDS, window=HOUR)

    assert len(schedule) >= 60
    assert schedule_overlapping(schedule) >= 10
    assert len({entry.kind for entry in schedule}) >= len(FAULT_KINDS) - 3  # nearly every kind, each drawn alike


def test_the_suites_short_soak_draws_at_least_four_overlapping_faults():
    schedule = schedule_draw(
        seed=SHORT_SOAK.seed, kinds=[FAULT_KINDS[name] for name in SHORT_SOAK.kinds], window=SHORT_SOAK.window,
        gap=SHORT_SOAK.gap, max_hold_seconds=SHORT_SOAK.max_hold_seconds,
    )  # fmt: skip

    assert len(schedule) >= 4
    assert schedule_overlapping(schedule) >= 4
