"""The pytest hook that makes a skip under ``CI=true`` a failure unless tests/helpers/tools.py allows it.

``tests/conftest.py`` imports the hook (so the suite has it); ``-p tests.helpers.ci_skips`` loads it on its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.tools import in_ci, is_allowed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ``CI=true`` a skip is a failure unless ALLOWED_CI_SKIPS lists it: a missing tool, extra or data set
    cannot keep a CI job green by skipping what it should have tested."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr).removeprefix("Skipped: ")
    if not is_allowed(reason):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true and this test skipped: {reason}\n(install what it needs; tests/helpers/tools.py "
            "ALLOWED_CI_SKIPS lists the only skips CI allows)"
        )
