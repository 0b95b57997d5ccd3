"""gunicorn.conf.py's worker hooks and settings (the run command's and the image's web server)."""
import gc
import runpy
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def test_a_worker_freezes_the_loaded_application_out_of_the_garbage_collectors_scans():
    hooks = runpy.run_path(str(CONF))
    gc.unfreeze()
    try:
        hooks["post_worker_init"](worker=None)
        assert gc.get_freeze_count() > 1000  # this process's loaded modules and their objects
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(("asked", "access_log"), [(None, None), ("", None), ("-", "-"), ("/var/log/web", "/var/log/web")])
def test_requests_are_logged_only_when_asked_for(monkeypatch, asked, access_log):
    if asked is None:
        monkeypatch.delenv("WEB_ACCESS_LOG", raising=False)
    else:
        monkeypatch.setenv("WEB_ACCESS_LOG", asked)
    assert runpy.run_path(str(CONF))["accesslog"] == access_log
