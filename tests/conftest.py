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
