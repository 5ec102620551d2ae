"""Test-wide fixtures: fail any blocking call made inside the event loop."""

from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Raise BlockingError when a test's event loop thread makes a blocking call."""
    with blockbuster_ctx() as bb:
        yield bb
