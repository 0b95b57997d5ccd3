"""/api/docs in headless Chromium on a machine that reaches nothing beyond itself.

The page is served as the platform serves it: gunicorn with the static files
collected (scripts/run.sh and the image run collectstatic; whitenoise serves
them). Chromium resolves no host name but 127.0.0.1, and its DevTools log
lists every request the page sent.
"""
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import OFFLINE_FLAGS, chromium, requested_urls
from tests.servers import ROOT, gunicorn_server

pytestmark = pytest.mark.django_db

# Swagger UI fetches the schema and renders it in the page: a few seconds on a slow machine.
RENDER_SECONDS = 20
# Schemes Chromium answers itself, without any network request.
IN_BROWSER_SCHEMES = {"data", "blob", "chrome"}
CHECKOUT_OPERATION = '.opblock-post .opblock-summary-path[data-path="/api/v1/checkout"]'


@pytest.fixture
def docs_server(tmp_path: Path) -> Iterator[str]:
    """Collect the static files into a directory of this test's own and serve the platform from it with gunicorn."""
    static_root = tmp_path / "static"
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "ecommerce.settings.test", "DJANGO_STATIC_ROOT": str(static_root)}
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    with gunicorn_server(DJANGO_STATIC_ROOT=str(static_root)) as base_url:
        yield base_url


@pytest.fixture
def offline_browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path / "chromium-profile", extra_flags=OFFLINE_FLAGS) as driver:
        yield driver


def test_api_docs_list_the_checkout_operation_with_no_request_leaving_the_machine(docs_server, offline_browser):
    # Given the platform under gunicorn and a browser that can reach nothing but this machine
    # When a developer opens the API docs
    offline_browser.get(f"{docs_server}/api/docs")
    try:
        checkout = WebDriverWait(offline_browser, RENDER_SECONDS).until(
            expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, CHECKOUT_OPERATION))
        )
    except TimeoutException:
        pytest.fail(
            "/api/docs listed no checkout operation within "
            f"{RENDER_SECONDS} s; the page asked for: {requested_urls(offline_browser)}"
        )

    # Then the operation list shows POST /api/v1/checkout
    operation = checkout.find_element(By.XPATH, "./ancestor::div[contains(@class, 'opblock-summary')]")
    assert operation.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text == "POST"
    assert len(offline_browser.find_elements(By.CSS_SELECTOR, ".opblock")) > 10
    # And every request the page sent went to the platform itself
    urls = requested_urls(offline_browser)
    assert f"{docs_server}/api/docs" in urls
    assert f"{docs_server}/api/schema" in urls
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in url for url in urls)
    # data: URLs are inline images, chrome: ones the browser's own start page;
    # whatever goes over the network must go to this server
    network = {urlsplit(url).netloc for url in urls if urlsplit(url).scheme not in IN_BROWSER_SCHEMES}
    assert network == {urlsplit(docs_server).netloc}
