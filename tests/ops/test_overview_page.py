"""The resilience overview in headless Chromium: a person on call logs in, reads it, follows its links.

Needs Debian's `chromium` and `chromium-driver` (tests/browser.py). One browser
serves the whole module; the page is served by
pytest-django's live server, with the admin's static files.
"""
import base64
import io
import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from orders.models import OrderStatus
from outbox.models import OutboxStatus
from resilience.breaker import State
from resilience.policies import breaker_for
from tests.browser import chromium
from tests.factories import UserFactory
from tests.ops.states import dead_letter, jobs_succeeded, order_aged, outbox_row

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 10


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def wait_for(browser: WebDriver, css: str):
    return WebDriverWait(browser, WAIT_SECONDS).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def text(browser: WebDriver, css: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, css).text.strip()


def admin_login(browser: WebDriver, base_url: str, username: str, password: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{base_url}/admin/login/?next=/admin/")
    wait_for(browser, "#id_username").send_keys(username)
    browser.find_element(By.CSS_SELECTOR, "#id_password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    wait_for(browser, "#resilience-overview-module")


def follow(browser: WebDriver, css: str) -> tuple[str, dict[str, list[str]], list[str]]:
    """Click the link at `css`; return the page reached: its path, its query and the changelist rows' text."""
    browser.find_element(By.CSS_SELECTOR, css).click()
    wait_for(browser, "#changelist")
    address = urlsplit(browser.current_url)
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")]
    return address.path, parse_qs(address.query), rows


def action_names(browser: WebDriver) -> set[str]:
    return {option.get_attribute("value") for option in browser.find_elements(By.CSS_SELECTOR, "select[name=action] option")}


def open_payment_breaker() -> None:
    """Fail calls through the shared paymentService breaker until it opens, as failing payments would."""
    breaker = breaker_for("paymentService")
    for _ in range(breaker.config.window_size):
        breaker.record_failure(breaker.acquire())
        if breaker.state() == State.OPEN:
            return
    pytest.fail("the paymentService breaker did not open")


def screenshot(browser: WebDriver, path: Path) -> None:
    """Save the whole page, not only the window, as a PNG (Chromium's DevTools protocol)."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True,
         "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}},
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.kafka  # every figure shows, consumer lag (read from the broker) too
def test_overview_shows_the_faults_a_test_made_and_links_to_the_lists_that_fix_them(
    browser, live_server, settings, tmp_path
):
    # Given: a staff user, an open breaker, a FAILED, a REFUSED and a PENDING outbox
    # row, an unresolved dead letter, a stuck and a fresh PENDING order, installed jobs.
    staff = UserFactory(is_staff=True, is_superuser=True)
    open_payment_breaker()
    failed_row = outbox_row(OutboxStatus.FAILED)
    refused_row = outbox_row(OutboxStatus.REFUSED)
    pending_row = outbox_row(OutboxStatus.PENDING, created_at=timezone.now() - timedelta(minutes=3))
    outbox_row(OutboxStatus.PUBLISHED, published_at=timezone.now())
    unresolved = dead_letter(offset=42)
    dead_letter(offset=43, resolved=True)
    settings.ORDER_RECONCILE_AFTER_SECONDS = 120
    stuck = order_aged(OrderStatus.PENDING, age=timedelta(minutes=10))
    fresh = order_aged(OrderStatus.PENDING, age=timedelta(seconds=5))
    call_command("setup_schedules", stdout=io.StringIO())
    jobs_succeeded({"outbox.relay": timezone.now()})

    # When: they log in through the admin form and open the overview from the index.
    admin_login(browser, live_server.url, staff.username, "password123")
    browser.find_element(By.LINK_TEXT, "Resilience overview").click()
    wait_for(browser, "#activity")
    overview = browser.current_url

    # Then: every figure shows what was made.
    assert urlsplit(overview).path == "/admin/resilience-overview/"
    assert "Resilience overview" in browser.title
    assert text(browser, "#outbox-backlog .value") == "1 PENDING"
    assert text(browser, "#outbox-backlog .note") == "oldest: 3 minutes old"
    assert text(browser, "#outbox-failed .value") == "1 FAILED"
    assert text(browser, "#outbox-failed .value.refused") == "1 REFUSED"
    payment = browser.find_element(By.CSS_SELECTOR, "tr.breaker[data-breaker=paymentService]")
    assert payment.get_attribute("data-state") == "OPEN"
    assert payment.find_element(By.CSS_SELECTOR, ".badge").text == "OPEN"
    # "since unknown" until the breaker document records its transition time.
    assert payment.find_element(By.CSS_SELECTOR, ".note").text.startswith("since ")
    publisher = browser.find_element(By.CSS_SELECTOR, "tr.breaker[data-breaker=kafkaPublisher]")
    assert publisher.get_attribute("data-state") == "CLOSED"
    assert text(browser, "#dead-letters .value") == "1 unresolved"
    assert text(browser, '#dead-letters tr[data-topic="orders.created"] td') == "1"
    assert text(browser, "#stuck-orders tr[data-status=PENDING] td") == "1"
    assert text(browser, "#stuck-orders tr[data-status=PROCESSING] td") == "0"
    assert text(browser, "#stuck-orders tr.payments-in-doubt td") == "0"
    lag_rows = browser.find_elements(By.CSS_SELECTOR, "#consumer-lag tr.partition-lag")
    assert [row.get_attribute("data-partition") for row in lag_rows] == ["0", "1", "2"]
    assert text(browser, '#periodic-jobs tr[data-task="outbox.relay"] .badge') == "on time"
    assert text(browser, '#periodic-jobs tr[data-task="outbox.vacuum"] .badge') == "late"  # never succeeded
    totals = {
        line.get_attribute("data-series"): line.find_element(By.CSS_SELECTOR, ".series-total").text
        for line in browser.find_elements(By.CSS_SELECTOR, "#activity .spark")
    }
    assert totals == {"Events published": "1", "Checkouts": "2", "Dead letters": "2"}
    assert len(browser.find_elements(By.CSS_SELECTOR, "#activity svg rect")) == 3 * 60
    assert "unavailable" not in browser.find_element(By.CSS_SELECTOR, "#content-main").text

    shot = tmp_path / "resilience-overview.png"
    screenshot(browser, shot)
    if os.environ.get("OVERVIEW_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["OVERVIEW_SCREENSHOT"])

    # And: each link leads to the filtered admin list, whose actions fix what it shows.
    path, query, rows = follow(browser, "#outbox-failed .value a")
    assert (path, query) == ("/admin/outbox/outboxevent/", {"status__exact": ["FAILED"]})
    assert len(rows) == 1 and failed_row.aggregate_id in rows[0]
    assert "requeue_failed" in action_names(browser)

    browser.get(overview)
    path, query, rows = follow(browser, "#outbox-failed .value.refused a")
    assert (path, query) == ("/admin/outbox/outboxevent/", {"status__exact": ["REFUSED"]})
    assert len(rows) == 1 and refused_row.aggregate_id in rows[0]
    assert "requeue_failed" in action_names(browser)

    browser.get(overview)
    path, query, rows = follow(browser, "#outbox-backlog .value a")
    assert (path, query) == ("/admin/outbox/outboxevent/", {"status__exact": ["PENDING"]})
    assert len(rows) == 1 and pending_row.aggregate_id in rows[0]

    browser.get(overview)
    path, query, rows = follow(browser, '#dead-letters tr[data-topic="orders.created"] a')
    assert path == "/admin/deadletters/deadletter/"
    assert query == {"original_topic__exact": ["orders.created"], "resolved_at__isempty": ["1"]}
    assert len(rows) == 1 and rows[0].startswith(f"{unresolved.pk} orders.created 1 42")
    assert {"replay", "resolve"} <= action_names(browser)

    browser.get(overview)
    path, query, rows = follow(browser, "#stuck-orders tr[data-status=PENDING] a")
    assert path == "/admin/orders/order/"
    assert query.keys() == {"status__exact", "updated_at__lt"} and query["status__exact"] == ["PENDING"]
    assert len(rows) == 1 and stuck.order_number in rows[0] and fresh.order_number not in rows[0]

    browser.get(overview)
    path, query, rows = follow(browser, '#activity .spark[data-series="Dead letters"] a')
    assert path == "/admin/deadletters/deadletter/" and query.keys() == {"created_at__gte"}
    assert len(rows) == 2

    browser.get(overview)
    path, query, rows = follow(browser, '#periodic-jobs tr[data-task="outbox.relay"] a')
    assert (path, query) == ("/admin/django_celery_beat/periodictask/", {"task__exact": ["outbox.relay"]})
    assert len(rows) == 1 and "outbox-sweep" in rows[0]


def test_a_user_who_is_not_staff_cannot_open_the_overview(browser, live_server):
    user = UserFactory(manager=True)
    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/resilience-overview/")
    wait_for(browser, "#id_username").send_keys(user.username)
    browser.find_element(By.CSS_SELECTOR, "#id_password").send_keys("password123")
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()

    wait_for(browser, ".errornote")
    assert urlsplit(browser.current_url).path == "/admin/login/"
    assert not browser.find_elements(By.CSS_SELECTOR, "#activity")
