"""The toy split the agent tests play their episodes on."""

from __future__ import annotations

import pytest

from trustrec.data import Split, split_leave_one_out
from trustrec.testing import toy_dataset


@pytest.fixture(scope="module")
def split() -> Split:
    return split_leave_one_out(toy_dataset(), short_users="train")
