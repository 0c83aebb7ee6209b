"""Serving settings from the environment (pydantic-settings), and what importing the server loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from image_classifier.api.settings import ServeSettings, env_name
from image_classifier.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in ServeSettings.model_fields:
        monkeypatch.delenv(env_name(field), raising=False)


def test_defaults_without_environment() -> None:
    settings = ServeSettings.from_env()
    assert (settings.model_path, settings.port, settings.max_batch, settings.max_wait_ms) == ("", 8000, 16, 5.0)
    assert (settings.max_files, settings.max_upload_bytes, settings.max_request_bytes) == (32, 10 * 2**20, 64 * 2**20)
    assert (settings.max_pixels, settings.prediction_log, settings.threads) == (4096 * 4096, "", 0)
    assert settings.model_process is True


def test_environment_is_read_and_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"MODEL_PATH": "models/m.onnx", "PORT": "9001", "IC_MAX_BATCH": "4", "IC_MODEL_PROCESS": " Off "}
    for name, value in {**env, "IC_MAX_WAIT_MS": "", "IC_PREDICTION_LOG": ""}.items():
        monkeypatch.setenv(name, value)
    settings = ServeSettings.from_env()
    assert (settings.model_path, settings.port, settings.max_batch) == ("models/m.onnx", 9001, 4)
    assert (settings.model_process, settings.max_wait_ms, settings.prediction_log) == (False, 5.0, "")


def test_command_line_values_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IC_MAX_BATCH", "4")
    monkeypatch.setenv("MODEL_PATH", "from-env.pt")
    settings = ServeSettings.from_env(model_path="given.pt", max_batch=2, max_wait_ms=None)
    assert (settings.model_path, settings.max_batch, settings.max_wait_ms) == ("given.pt", 2, 5.0)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("IC_MAX_BATCH", "many", "IC_MAX_BATCH='many' is not an integer."),
        ("IC_MAX_BATCH", "0", "IC_MAX_BATCH='0' must be at least 1."),
        ("IC_MAX_FILES", "2.5", "IC_MAX_FILES='2.5' is not an integer."),
        ("IC_MAX_WAIT_MS", "soon", "IC_MAX_WAIT_MS='soon' is not a number."),
        ("IC_MAX_WAIT_MS", "-1", "IC_MAX_WAIT_MS='-1' must be at least 0."),
        ("IC_MAX_WAIT_MS", "nan", "IC_MAX_WAIT_MS='nan' is not a finite number."),
        ("IC_THREADS", "-2", "IC_THREADS='-2' must be at least 0."),
        ("IC_MODEL_PROCESS", "maybe", "IC_MODEL_PROCESS='maybe' is not a boolean (true/false, 1/0)."),
        ("PORT", "http", "PORT='http' is not an integer."),
        ("PORT", "70000", "PORT='70000' must be at most 65535."),
    ],
)
def test_a_bad_variable_names_itself_its_value_and_what_is_valid(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        ServeSettings.from_env()
    assert str(error.value) == message


def test_several_bad_values_are_still_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IC_MAX_FILES", "0")
    with pytest.raises(ConfigError) as error:
        ServeSettings.from_env(max_wait_ms=-5.0)
    assert str(error.value) == "--max-wait-ms=-5.0 must be at least 0; IC_MAX_FILES='0' must be at least 1."


def test_model_path_is_required_only_to_open_a_model() -> None:
    with pytest.raises(ConfigError, match="MODEL_PATH is not set"):
        ServeSettings.from_env().require_model()
    assert ServeSettings.from_env(model_path="m.pt").require_model() == "m.pt"


def test_importing_the_server_builds_no_app_and_loads_no_scipy() -> None:
    code = (
        "import sys, image_classifier.api as api\n"
        "assert 'fastapi' not in sys.modules and 'app' not in vars(api)\n"
        "import image_classifier.api.app\n"
        "assert callable(api.create_app)\n"
        "print(sorted(m for m in ('scipy', 'matplotlib') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
