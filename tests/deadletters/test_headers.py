from deadletters.services import DeadLetterContext, dead_letter_headers


def _context(attempts: int, offset: int) -> DeadLetterContext:
    return DeadLetterContext(
        topic="orders.created", partition=2, offset=offset, timestamp=1764000000000, consumer_group="g", attempts=attempts
    )


def test_original_headers_are_kept_and_error_headers_added():
    try:
        raise ValueError("bad total")
    except ValueError as error:
        headers = dict(dead_letter_headers([("event_id", b"e-1"), ("correlation_id", b"c-1")], _context(3, 41), error))
    assert headers["event_id"] == b"e-1" and headers["correlation_id"] == b"c-1"
    assert headers["dlt-original-topic"] == b"orders.created"
    assert headers["dlt-original-partition"] == b"2" and headers["dlt-original-offset"] == b"41"
    assert headers["dlt-original-timestamp"] == b"1764000000000"
    assert headers["dlt-original-consumer-group"] == b"g"
    assert headers["dlt-exception-fqcn"] == b"builtins.ValueError"
    assert headers["dlt-exception-message"] == b"bad total"
    assert b"ValueError: bad total" in headers["dlt-exception-stacktrace"]
    assert headers["dlt-attempts"] == b"3"


def test_a_second_dead_lettering_replaces_the_error_headers_instead_of_piling_them_up():
    first = dead_letter_headers([("event_id", b"e-1")], _context(1, 5), KeyError("first"))
    second = dead_letter_headers(first, _context(2, 9), RuntimeError("second"))
    names = [name for name, _ in second]
    assert len(names) == len(set(names))  # no header twice
    values = dict(second)
    assert values["dlt-original-offset"] == b"9" and values["dlt-exception-fqcn"] == b"builtins.RuntimeError"
    assert values["event_id"] == b"e-1"
