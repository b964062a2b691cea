"""tests/conftest.need: a missing prerequisite skips on a developer's machine and fails under CI."""
from __future__ import annotations

import pytest

from tests import conftest


@pytest.mark.parametrize("ci, outcome", [(False, pytest.skip.Exception), (True, pytest.fail.Exception)])
def test_need_skips_locally_and_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setattr(conftest, "CI", ci)
    conftest.need(True, "present")  # nothing happens
    with pytest.raises(outcome, match="espeak-ng not installed"):
        conftest.need(False, "espeak-ng not installed")


@conftest.needs(True, "always there")
def test_the_marker_lets_a_present_prerequisite_run():
    pass
