"""gunicorn.conf.py's worker hooks (the run command's and the image's web server)."""
import gc
import runpy
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def test_a_worker_freezes_the_loaded_application_out_of_the_garbage_collectors_scans():
    hooks = runpy.run_path(str(CONF))
    gc.unfreeze()
    try:
        hooks["post_worker_init"](worker=None)
        assert gc.get_freeze_count() > 1000  # this process's loaded modules and their objects
    finally:
        gc.unfreeze()
