"""Under CI=true a skip cannot hide a failure: only the skips tests/helpers/tools.py lists pass, the rest fail.

Each case runs a real pytest session, with the suite's hook (tests/helpers/ci_skips.py), on a test file written here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers.tools import ALLOWED_CI_SKIPS, TOOLS

SKIPPING_TESTS = """
import pytest
from tests.helpers.tools import allowed_reason, missing


def test_plain_skip():
    pytest.skip("the tool is not here")


def test_missing_extra():
    pytest.importorskip("no_such_module_anywhere", reason="extra not installed (pip install -e '.[x]')")


@pytest.mark.skipif(True, reason="a marker's skip")
def test_skip_marker():
    pass


def test_allowed_skip():
    pytest.skip(allowed_reason("cuda", "no GPU here"))


def test_missing_promtool():
    missing("promtool")


def test_missing_shared_data():
    missing("shared-data", "not found at /nowhere")


@pytest.mark.xfail(reason="a known failure", strict=True)
def test_expected_failure():
    assert False
"""


def outcomes(tmp_path: Path, **env: str) -> tuple[dict[str, str], str]:
    """Each test's outcome in a pytest session of :data:`SKIPPING_TESTS` under ``env`` (from its JUnit XML report:
    passed, failed, skipped or xfailed), and the session's output."""
    test_file, report = tmp_path / "test_skipping.py", tmp_path / "report.xml"
    test_file.write_text(SKIPPING_TESTS)
    clean = {k: v for k, v in os.environ.items() if k not in {"CI", "GITHUB_ACTIONS", "PYTEST_ADDOPTS"}}
    command = [sys.executable, "-m", "pytest", "-p", "tests.helpers.ci_skips", "-p", "no:cacheprovider", "-rA"]
    result = subprocess.run(
        [*command, f"--junitxml={report}", str(test_file)],
        cwd=REPO_ROOT,
        env={**clean, **env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},  # the hook alone: a session starts in a second
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            found[case.get("name", "")] = "FAILED"
        elif skipped is not None:
            found[case.get("name", "")] = "XFAIL" if skipped.get("type") == "pytest.xfail" else "SKIPPED"
        else:
            found[case.get("name", "")] = "PASSED"
    return found, result.stdout


def test_outside_ci_missing_tools_skip(tmp_path: Path) -> None:
    found, stdout = outcomes(tmp_path)
    assert found == {
        "test_plain_skip": "SKIPPED",
        "test_missing_extra": "SKIPPED",
        "test_skip_marker": "SKIPPED",
        "test_allowed_skip": "SKIPPED",
        "test_missing_promtool": "SKIPPED",
        "test_missing_shared_data": "SKIPPED",
        "test_expected_failure": "XFAIL",
    }, stdout
    assert f"promtool is not available: {TOOLS['promtool'].install}" in stdout


def test_under_ci_only_the_listed_skips_pass(tmp_path: Path) -> None:
    found, stdout = outcomes(tmp_path, CI="true")
    assert found == {
        "test_plain_skip": "FAILED",
        "test_missing_extra": "FAILED",
        "test_skip_marker": "FAILED",
        "test_allowed_skip": "SKIPPED",
        "test_missing_promtool": "FAILED",
        "test_missing_shared_data": "FAILED",
        "test_expected_failure": "XFAIL",
    }, stdout
    assert "CI=true and promtool is not available: apt-get install prometheus" in stdout
    assert "CI=true and this test skipped: the tool is not here" in stdout
    assert "CI=true and this test skipped: extra not installed (pip install -e '.[x]')" in stdout


def test_on_github_the_shared_data_skip_is_allowed(tmp_path: Path) -> None:
    found, stdout = outcomes(tmp_path, CI="true", GITHUB_ACTIONS="true")
    assert found["test_missing_shared_data"] == "SKIPPED" and found["test_missing_promtool"] == "FAILED", stdout
    assert ALLOWED_CI_SKIPS["shared-data"].reason in stdout


@pytest.mark.parametrize("key", sorted(ALLOWED_CI_SKIPS))
def test_every_allowed_skip_says_why(key: str) -> None:
    assert len(ALLOWED_CI_SKIPS[key].reason.split()) >= 6
