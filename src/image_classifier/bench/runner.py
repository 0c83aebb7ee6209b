"""The bench's run: each case in a child process, then the accuracy, start-up, serving and import records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from image_classifier.bench.accuracy import accuracy_plan, accuracy_record, print_accuracy_table
from image_classifier.bench.cases import Case, main_shapes_overrides, plan
from image_classifier.bench.children import measure_in_child, prepare_animals, prepare_data
from image_classifier.bench.imports import import_records, print_import_table
from image_classifier.bench.record import BenchRecord
from image_classifier.bench.report import machine, print_table, write_records
from image_classifier.bench.serving import serving_records
from image_classifier.bench.startup import startup_records


@dataclass(frozen=True)
class BenchOptions:
    """What ``python -m image_classifier.bench`` runs, and where."""

    out: Path
    """Where ``bench.json`` goes."""
    work: Path
    """Datasets, caches, the log and scratch runs."""
    shared: Path
    """Real-photo samples (``animals-v2``); their cases are skipped where it is absent."""
    quick: bool = False
    image_size: int | None = None
    startup: bool = True
    serve: bool = True
    accuracy: bool = True
    imports: bool = True


@dataclass(frozen=True)
class Workspace:
    """The folders and log of one run."""

    data_root: Path
    log: Path
    have_shared: bool


def prepare_workspace(options: BenchOptions, console: Console) -> Workspace:
    """Make the output and data folders, empty the log, and import the real photos where they are present."""
    animals_source = options.shared / "animals-v2"
    have_shared = animals_source.is_dir()
    if not have_shared:
        console.print(f"[yellow]Skipping the real-photo cases: {animals_source} is absent.[/]")
    options.out.mkdir(parents=True, exist_ok=True)
    data_root = options.work / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    log = options.work / "bench.log"
    log.write_text("")
    if have_shared and not options.quick:
        prepare_animals(animals_source, data_root / "animals_v2")
    return Workspace(data_root, log, have_shared)


def measured_record(case: Case, log: Path) -> BenchRecord:
    """``case`` measured in a child process, its dataset prepared in another first."""
    prepare_data(case)
    record = BenchRecord.from_json({"case": case.case, "phase": case.phase, **measure_in_child(case, log)})
    record.reference = case.reference
    if case.epoch:
        record.details["epoch_s"] = record.details["loop_s"]
    return record


def run_cases(options: BenchOptions, space: Workspace, console: Console) -> list[BenchRecord]:
    """Every case of the plan, one child process each."""
    records = []
    shared = options.shared if space.have_shared else None
    for case in plan(space.data_root, shared, options.quick, options.image_size):
        console.print(f"[bold]{case.case}[/] ({case.phase}) ...", end=" ")
        records.append(measured_record(case, space.log))
        console.print(f"ratio {records[-1].ratio:.3f}")
    return records


def run_accuracy(options: BenchOptions, space: Workspace, console: Console) -> BenchRecord:
    """The accuracy record (see :mod:`image_classifier.bench.accuracy`) on the data this run has."""
    shapes = main_shapes_overrides(space.data_root, options.quick, options.image_size)
    animals = space.data_root / "animals_v2" if space.have_shared else None
    trial = accuracy_plan(shapes, animals, options.quick)
    console.print(f"[bold]{trial.case}[/] (accuracy, {len(trial.seeds)} seed(s) per path) ...", end=" ")

    def warm(overrides: list[str]) -> None:
        prepare_data(Case(trial.case, "accuracy", overrides), mode="--warm-cache")

    record = accuracy_record(trial, options.work, space.log, warm)
    console.print(f"mean delta {record['accuracy_delta']:+.3f}")
    return BenchRecord.from_json(record)


def run(options: BenchOptions, console: Console) -> list[BenchRecord]:
    """Run every case, write ``out/bench.json`` and print the tables; returns the records."""
    space = prepare_workspace(options, console)
    records = run_cases(options, space, console)
    if options.accuracy:
        records.append(run_accuracy(options, space, console))
    if options.startup and not options.quick:
        records += startup_records(space.data_root, options.work / "scratch")
    if options.serve and not options.quick:
        records += serving_records(options.work / "scratch", console)
    if options.imports and not options.quick:
        records += [BenchRecord.from_json(row) for row in import_records(options.work / "imports")]
    meta = machine()
    path = write_records(options.out, records, meta)
    title = f"Benchmarks (load average {meta['load_average']} on {meta['cpus']} CPUs) -> {path}"
    print_tables(console, records, title)
    return records


def print_tables(console: Console, records: list[BenchRecord], title: str) -> None:
    """The records against their ceilings, then the accuracy table and the import table."""
    print_table(console, [r for r in records if r.phase not in ("accuracy", "import")], title)
    print_accuracy_table(console, [r.to_json() for r in records if r.phase == "accuracy"])
    if any(r.phase == "import" for r in records):
        print_import_table([r.to_json() for r in records if r.phase == "import"])
