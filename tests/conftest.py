"""Shared test configuration: hypothesis profiles.

The default profile keeps the whole suite within a few minutes on two cores; run
``pytest --hypothesis-profile=thorough`` for many more random configurations per property.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("default")


def missing(reason: str) -> None:
    """Skip a test whose outside part (Chromium, an MPI launcher, a mountable tmpfs) is missing,
    saying why; under CI (``CONVPROP_CI=1``, set by ``.ci/run``, which installs those parts)
    fail instead, so that CI never skips them."""
    import os

    import pytest

    if os.environ.get("CONVPROP_CI") == "1":
        pytest.fail(f"CI must run this test, but: {reason}")
    pytest.skip(reason)
