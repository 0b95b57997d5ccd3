"""Metrics of many processes are merged from their files, including while one is being created."""
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.values import MultiProcessValue

from ecommerce.metrics import ProcessFilesCollector
from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401 (no Redis needed)


@pytest.mark.unit
def test_a_metrics_file_still_being_created_is_left_out_not_fatal(tmp_path, monkeypatch):
    # Given one process's real counter file, and the empty file a process
    # that has just started leaves until it sizes it
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    import prometheus_client.values as values

    monkeypatch.setattr(values, "ValueClass", MultiProcessValue(process_identifier=lambda: 4242))
    counter = Counter("test_files_merged", "A counter written to its process file.", registry=None)
    counter.inc(3)
    (tmp_path / "counter_4243.db").touch()

    # When the scrape merges the directory
    registry = CollectorRegistry()
    ProcessFilesCollector(registry, path=str(tmp_path))
    samples = {sample.name: sample.value for family in registry.collect() for sample in family.samples}

    # Then the real process's value is there, and the empty file did not fail it
    assert samples["test_files_merged_total"] == 3.0
