"""The command line of ``tasks.py``, parsed in-process by invoke's own Program and Parser.

invoke has no public way to make a positional argument optional (pyinvoke/invoke#159), so
``tasks.py`` wraps the private ``ParseMachine.complete_context``. These tests fail when invoke
changes what that wrapper relies on, instead of ``invoke train`` breaking for users.
"""

from __future__ import annotations

import importlib
import re
import sys
from types import ModuleType

import pytest
from invoke import Collection, Program
from invoke.parser import ParseError, Parser, ParserContext
from invoke.parser.parser import ParseMachine

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def tasks_module() -> ModuleType:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module("tasks")


@pytest.fixture(scope="module")
def namespace(tasks_module: ModuleType) -> Collection:
    return Collection.from_module(tasks_module)


def _parse(namespace: Collection, *argv: str) -> ParserContext:
    (context,) = Parser(contexts=namespace.to_contexts()).parse_argv(list(argv))
    return context


def _dry(namespace: Collection, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    Program(namespace=namespace, name="invoke", binary="invoke").run(["invoke", "--dry", *argv], exit=False)
    return re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out).strip()


def test_the_private_api_the_patch_wraps_is_still_there(tasks_module: ModuleType) -> None:
    assert callable(getattr(ParseMachine, "complete_context", None))
    assert ParseMachine.complete_context is tasks_module._complete_context_allowing_no_overrides
    assert hasattr(ParserContext(name="x"), "positional_args")


@pytest.mark.parametrize(
    ("argv", "name", "expected"),
    [
        (["train"], "overrides", ""),
        (["train", "a=1 b=2"], "overrides", "a=1 b=2"),
        (["train", "--nproc", "2", "a=1"], "overrides", "a=1"),
        (["evaluate"], "overrides", ""),
        (["evaluate", "checkpoint=x.pt"], "overrides", "checkpoint=x.pt"),
        (["docker-train"], "overrides", ""),
        (["weights"], "name", ""),
        (["weights", "efficientnet_lite1"], "name", "efficientnet_lite1"),
        (["data", "birds", "--source", "photos"], "dataset", ""),
        (["data", "report", "birds"], "dataset", "birds"),
    ],
)
def test_optional_positionals_parse(namespace: Collection, argv: list[str], name: str, expected: str) -> None:
    context = _parse(namespace, *argv)
    assert context.args[name].value == expected


def test_other_positionals_stay_required(namespace: Collection) -> None:
    with pytest.raises(ParseError, match="'data' did not receive required positional arguments: 'name'"):
        _parse(namespace, "data")


def test_list_shows_the_tasks(namespace: Collection, capsys: pytest.CaptureFixture[str]) -> None:
    Program(namespace=namespace, name="invoke", binary="invoke").run(["invoke", "--list"], exit=False)
    listed = capsys.readouterr().out
    for name in ("train", "evaluate", "weights", "data", "serve"):
        assert re.search(rf"^\s+{name}\b", listed, re.MULTILINE), listed


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train"], "-m image_classifier.train"),
        (["train", "model=timm trainer.max_epochs=3"], "-m image_classifier.train model=timm trainer.max_epochs=3"),
        (["weights"], "-m image_classifier.weights import efficientnet_lite0"),
        (["data", "report", "birds"], "-m image_classifier.data report birds"),
        (
            ["data", "birds", "--source", "my photos.zip", "--dedupe", "--val-fraction", "0.2"],
            "-m image_classifier.data birds --source 'my photos.zip' --dedupe --val-fraction 0.2",
        ),
    ],
)
def test_the_command_a_task_runs(
    namespace: Collection, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert _dry(namespace, capsys, *argv).endswith(expected)
