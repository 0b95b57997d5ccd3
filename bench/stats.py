"""Percentiles of samples and of Prometheus histogram buckets, shared by the benches."""
import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def histogram_quantile(buckets: Sequence[tuple[float, float]], fraction: float) -> float:
    """Estimate a quantile from cumulative (upper bound, count) buckets, as PromQL's histogram_quantile does.

    Linear inside the bucket the rank falls in; the +Inf bucket answers its
    lower bound. NaN when the buckets counted nothing.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return math.nan
    rank = fraction * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in ordered:
        if count >= rank:
            if math.isinf(upper_bound):
                return lower_bound
            if count == lower_count:
                return upper_bound
            return lower_bound + (upper_bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper_bound, count
    return lower_bound
