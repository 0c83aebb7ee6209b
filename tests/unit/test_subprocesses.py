"""A command's failure as one line: the last line it wrote to stderr, else to stdout, else its exit status."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from image_classifier.errors import DataError, UserError
from image_classifier.subprocesses import failure_reason, last_line, run_checked


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_failing_command_raises_its_last_stderr_line() -> None:
    code = "import sys; print('progress'); sys.stderr.write('warning: slow\\nno such dataset: cats\\n\\n'); sys.exit(3)"
    with pytest.raises(UserError, match=r"^importing cats failed: no such dataset: cats$"):
        run_checked(python(code), "importing cats failed")


def test_without_stderr_the_last_stdout_line_is_the_reason() -> None:
    with pytest.raises(DataError, match=r"^dvc failed: bad revision$"):
        run_checked(
            python("import sys; print('one'); print('bad revision'); sys.exit(1)"), "dvc failed", error=DataError
        )


def test_a_silent_failure_gives_its_exit_status() -> None:
    with pytest.raises(UserError, match=r"^git failed: exit 7$"):
        run_checked(python("import sys; sys.exit(7)"), "git failed")


def test_a_success_returns_its_output_and_takes_run_options(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(sys.stdin.read().upper())"
    done = run_checked(python(code), "echo failed", cwd=tmp_path, input="note")
    assert done.stdout.splitlines() == [str(tmp_path), "NOTE"]


def test_undecodable_output_still_gives_a_line() -> None:
    code = "import sys; sys.stderr.buffer.write(b'bad byte \\xff here\\n'); sys.exit(2)"
    with pytest.raises(UserError, match=r"^decode failed: bad byte .* here$"):
        run_checked(python(code), "decode failed")


def test_last_line_prefers_the_first_output_with_text() -> None:
    assert last_line("  \n", "first\n  second  \n") == "second"
    assert last_line("", "") == ""
    assert failure_reason(2, "", " \n") == "exit 2"
    assert failure_reason(2, "trace\nreason") == "reason"
