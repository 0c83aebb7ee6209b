"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import hosts


@pytest.fixture
def two_hosts() -> Iterator[tuple[hosts.Host, hosts.Host]]:
    """Hosts A (10.77.0.1) and B (10.77.0.2) in network namespaces, torn down whatever happens."""
    with hosts.two_hosts() as pair:
        yield pair
