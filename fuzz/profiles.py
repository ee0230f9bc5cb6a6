"""Hypothesis settings profiles, one definition for this repo's tests and the plugin.

`ci` is small and derandomised, `dev` the default, `fuzz` for long runs; HYPOTHESIS_PROFILE
picks one. No deadline: one case compiles, which can take seconds.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILES = {"ci": dict(max_examples=15, derandomize=True),
            "dev": dict(max_examples=100),
            "fuzz": dict(max_examples=100_000)}


def load_profile() -> str:
    """Register the profiles and load the one HYPOTHESIS_PROFILE names (default `dev`)."""
    for name, options in PROFILES.items():
        settings.register_profile(name, deadline=None, print_blob=True,
                                  suppress_health_check=[HealthCheck.too_slow,
                                                         HealthCheck.data_too_large],
                                  **options)
    name = os.environ.get("HYPOTHESIS_PROFILE", "dev")
    settings.load_profile(name)
    return name
