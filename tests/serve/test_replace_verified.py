"""Every output that replaces an earlier one is complete and verified first: an export that fails its check or is
killed leaves the earlier model in place, text outputs are written whole, and what a killed writer left beside its
target is removed by the next write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import image_classifier.export as export_module
from image_classifier.atomic import remove_stale_partials, write_text_atomic
from image_classifier.errors import UserError
from image_classifier.export import export


def _partials(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith((".partial", ".old")))


def test_an_export_that_fails_verification_leaves_the_earlier_model(
    bundle_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "model.onnx"
    export(bundle_path, output)
    good, report = output.read_bytes(), output.with_suffix(".export.json").read_text()
    monkeypatch.setattr(export_module, "max_abs_diff", lambda bundle, path: 0.5)  # an export that differs
    with pytest.raises(UserError, match=r"differs from PyTorch by 0\.5 .*/model\.onnx was not replaced"):
        export(bundle_path, output)
    assert output.read_bytes() == good and output.with_suffix(".export.json").read_text() == report
    assert _partials(tmp_path) == []


# Writes the target half way, says so, then waits to be killed.
KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from image_classifier.atomic import atomic_path
    with atomic_path(sys.argv[1]) as partial:
        partial.write_text("half")
        print("writing", flush=True)
        time.sleep(60)
    """
)


def test_a_writer_killed_mid_write_leaves_the_old_file_and_its_partial_is_removed_next_time(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "metrics.json", '{"accuracy": 0.9}\n')
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    assert remove_stale_partials(target) == [], "a running writer's partial is kept"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    (left,) = _partials(tmp_path)
    assert left.startswith(f".metrics.json.{writer.pid}.")
    assert json.loads(target.read_text()) == {"accuracy": 0.9}
    write_text_atomic(target, '{"accuracy": 0.95}\n')  # the next start writes the file again
    assert _partials(tmp_path) == [] and json.loads(target.read_text()) == {"accuracy": 0.95}


def test_an_export_killed_midway_leaves_the_earlier_model(bundle_path: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    export(bundle_path, output)
    good = output.read_bytes()
    # the export process stops right after writing the ONNX file beside its target, before verifying it
    slow = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        import image_classifier.export as e
        def stalled(bundle, path):
            print("verifying", flush=True)
            time.sleep(60)
        e.max_abs_diff = stalled
        e.export(Path({str(bundle_path)!r}), Path({str(output)!r}))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "verifying\n"
    assert len(_partials(tmp_path)) == 1 and output.read_bytes() == good
    process.kill()
    process.wait(timeout=30)
    assert output.read_bytes() == good
    export(bundle_path, output)  # the next export removes what the killed one left
    assert _partials(tmp_path) == []
