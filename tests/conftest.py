"""Every test starts from the same random state: chainrule's default generator seeded with 0
(a process that is not seeded draws a fresh seed, as PyTorch's does)."""

import pytest

import chainrule


@pytest.fixture(autouse=True)
def _seed_chainrule():
    chainrule.manual_seed(0)
    yield
