"""Reading core/metrics.py's values in tests. Metrics are process-wide: a test compares a
value before and after what it does, never an absolute."""

from __future__ import annotations

from prometheus_client import REGISTRY


def sample(name: str, **labels: str) -> float:
    """The sample's value now (0 when it has not been counted yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def rate_limited(platform: str) -> float:
    return sample("momentum_platform_rate_limited_total", platform=platform)
