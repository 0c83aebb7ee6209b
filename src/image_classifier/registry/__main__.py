"""The model registry's command line: ``python -m image_classifier.registry register|promote|resolve|check``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from image_classifier.errors import report_user_errors
from image_classifier.registry.gate import check
from image_classifier.registry.publish import DEFAULT_NAME, STAGES, promote, register
from image_classifier.registry.versions import fetch, remote_url, resolve

DESCRIPTION = "The model registry: GTO tags over bundles versioned with DVC."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.registry", description=DESCRIPTION)
    parser.add_argument("--repo", default=".", help="the registry's git repository (default: the current directory)")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("register", help="record a bundle as a new version")
    add.add_argument("--checkpoint", required=True, help="the bundle (best.pt)")
    add.add_argument("--name", default=DEFAULT_NAME, help=f"artifact name (default {DEFAULT_NAME})")
    add.add_argument("--version", help="vX.Y.Z (default: the next one)")
    add.add_argument("--remote", help="DVC remote to push the bundle to (default: the repository's)")
    add.add_argument("--no-push", action="store_true", help="keep the bundle in the local DVC cache only")
    add.add_argument("--push-tag", action="store_true", help="push the version tag to git's origin")
    stage = commands.add_parser("promote", help="assign a stage to a version")
    stage.add_argument("name")
    stage.add_argument("--version", required=True)
    stage.add_argument("--stage", required=True, choices=STAGES)
    stage.add_argument("--push-tag", action="store_true", help="push the stage tag to git's origin")
    show = commands.add_parser("resolve", help="print the version a reference names, as JSON")
    show.add_argument("reference", help="NAME@v1.2.3, NAME#prod, NAME@latest or a tag name")
    show.add_argument("--out", help="also fetch the bundle into this directory")
    show.add_argument("--remote-url", metavar="REMOTE", nargs="?", const="", help="also give the bundle's remote URL")
    test = commands.add_parser("check", help="evaluate a version; fail when below its registered accuracy")
    test.add_argument("reference")
    test.add_argument("overrides", nargs="*", help="evaluate overrides for the pinned data, e.g. data.root=data")
    test.add_argument("--tolerance", type=float, default=0.0, help="accuracy it may fall short by (default 0)")
    return parser


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "register":
        model = register(
            args.checkpoint,
            repo=args.repo,
            name=args.name,
            version=args.version,
            remote=args.remote,
            push=not args.no_push,
            push_tag=args.push_tag,
        )
        print(f"Registered {model.reference} (commit {model.commit[:8]}, sha256 {model.sha256}).")
    elif args.command == "promote":
        model = promote(args.name, args.version, args.stage, repo=args.repo, push_tag=args.push_tag)
        print(f"{model.reference} is now in {args.stage}.")
    elif args.command == "resolve":
        print(json.dumps(describe(args.reference, args.repo, args.out, args.remote_url), indent=2))
    else:
        measured, registered = check(args.reference, args.overrides, repo=args.repo, tolerance=args.tolerance)
        print(f"accuracy {measured:.4f} on the pinned data, registered {registered:.4f}: ok")
    return 0


def describe(reference: str, repo: str, out: str | None, remote: str | None) -> dict[str, Any]:
    """What ``resolve`` prints: the version, where its bundle is, and optionally its local copy and remote URL."""
    model = resolve(reference, repo=repo)
    info: dict[str, Any] = {"reference": model.reference, **asdict(model)}
    if out:
        info["local_path"] = str(fetch(model, Path(out), repo=repo).resolve())
    if remote is not None:
        info["remote_url"] = remote_url(model, repo=repo, remote=remote or None)
    return info


if __name__ == "__main__":
    sys.exit(main())
