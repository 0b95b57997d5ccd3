"""The admin's resilience overview page, linked from the admin index.

`ecommerce/urls.py` includes this module's `urlpatterns` under
`admin/resilience-overview/`. The page renders `ecommerce.overview.overview_snapshot()`
and nothing else; its chart is inline SVG drawn here, so it needs no script and
no network.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path

from ecommerce.overview import overview_snapshot
from ecommerce.overview_figures import Activity, ActivitySeries, Snapshot, Unavailable

admin.site.index_template = "ecommerce/admin/index.html"

CHART_WIDTH = 360
CHART_HEIGHT = 48
BAR_GAP = 1
# Published events, checkouts, dead letters: the admin's blue, a calm green, the admin's error red.
SERIES_COLOURS = ("#417690", "#2e7d32", "#ba2121")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    minute: datetime
    count: int


@dataclass(frozen=True)
class Sparkline:
    series: ActivitySeries
    colour: str
    peak: int
    bars: list[Bar]


def sparklines(activity: Activity | Unavailable) -> list[Sparkline]:
    """Lay out one bar per minute for each series, each on its own scale.

    Separate scales: dead letters are a handful where published events are
    thousands, and a shared axis would flatten the few that matter most.
    """
    if isinstance(activity, Unavailable):
        return []
    lines = []
    for series, colour in zip(activity.series, SERIES_COLOURS, strict=True):
        peak = max(series.per_minute)
        slot = CHART_WIDTH / len(series.per_minute)
        bars = []
        for index, count in enumerate(series.per_minute):
            # A zero minute keeps a hairline so the time axis stays visible.
            height = max(CHART_HEIGHT * count / peak, 1.0) if peak else 1.0
            bars.append(
                Bar(
                    x=round(index * slot, 2),
                    y=round(CHART_HEIGHT - height, 2),
                    width=round(slot - BAR_GAP, 2),
                    height=round(height, 2),
                    minute=activity.since + timedelta(minutes=index),
                    count=count,
                )
            )
        lines.append(Sparkline(series=series, colour=colour, peak=peak, bars=bars))
    return lines


@dataclass(frozen=True)
class Section:
    """One box of the page: the figure, or "unavailable" with the reason, around the figure's own template."""

    id: str
    title: str
    figure: Any
    template: str
    wide: bool = False


def sections(snapshot: Snapshot) -> list[Section]:
    def section(id: str, title: str, name: str, *, wide: bool = False) -> Section:
        return Section(id, title, getattr(snapshot, name), f"ecommerce/admin/overview/{name}.html", wide)

    return [
        section("outbox-backlog", "Outbox backlog", "outbox_backlog"),
        section("outbox-failed", "Outbox rows failed", "outbox_failed"),
        section("breakers", "Circuit breakers", "breakers"),
        section("dead-letters", "Dead letters unresolved", "dead_letters"),
        section("consumer-lag", "Order consumer lag", "consumer_lag"),
        section("stuck-orders", "Stuck orders", "stuck_orders"),
        section("periodic-jobs", "Periodic jobs", "periodic_jobs", wide=True),
        section("activity", "Last hour, per minute", "activity", wide=True),
    ]


def resilience_overview(request: HttpRequest) -> TemplateResponse:
    """Render the resilience overview (staff only: wrapped in `admin.site.admin_view`)."""
    snapshot = overview_snapshot()
    context = {
        **admin.site.each_context(request),
        "title": "Resilience overview",
        "snapshot": snapshot,
        "sections": sections(snapshot),
        "sparklines": sparklines(snapshot.activity),
        "chart_width": CHART_WIDTH,
        "chart_height": CHART_HEIGHT,
    }
    return TemplateResponse(request, "ecommerce/admin/resilience_overview.html", context)


urlpatterns = [
    path("", admin.site.admin_view(resilience_overview), name="admin-resilience-overview"),
]
