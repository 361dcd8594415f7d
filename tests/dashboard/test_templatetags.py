"""The dashboard's template filters."""

import pytest

from dashboard.templatetags.colt import latency


@pytest.mark.parametrize(
    "seconds, shown",
    [
        (0.0041, "4.100 ms"),
        (0.001, "1.000 ms"),
        (1.25, "1250.000 ms"),
        (103.24e-6, "103.2 µs"),
        ("5e-05", "50.0 µs"),
        (None, "-"),
        ("", "-"),
    ],
)
def test_latency_is_shown_in_ms_or_us(seconds, shown):
    assert latency(seconds) == shown
