"""bench/capacity.py's search for the highest sustained rate, against platforms of known capacity."""
import pytest

from bench.capacity import rate_search


def platform_of_capacity(capacity: float, tried: list[float]):
    def probe(rate: float) -> bool:
        tried.append(rate)
        return rate <= capacity

    return probe


@pytest.mark.parametrize("capacity", [13.0, 19.9, 40.0, 71.0])
@pytest.mark.parametrize("start", [8.0, 20.0])
def test_the_search_ends_within_the_resolution_below_the_capacity_from_any_start(capacity, start):
    tried: list[float] = []
    sustained, failed = rate_search(
        platform_of_capacity(capacity, tried), start=start, lowest=1.0, highest=120.0, resolution=0.05
    )
    assert sustained <= capacity < failed <= sustained * 1.05
    assert len(tried) <= 12


def test_a_platform_that_sustains_nothing_down_to_the_lowest_rate_scores_zero():
    tried: list[float] = []
    sustained, failed = rate_search(platform_of_capacity(0.5, tried), start=20.0, lowest=1.0, highest=120.0, resolution=0.05)
    assert (sustained, min(tried)) == (0.0, failed)
    assert failed >= 1.0


def test_a_platform_that_sustains_every_rate_up_to_the_highest_has_no_failed_rate():
    sustained, failed = rate_search(platform_of_capacity(1000.0, []), start=8.0, lowest=1.0, highest=120.0, resolution=0.05)
    assert failed is None
    assert 120.0 / 1.5 < sustained <= 120.0
