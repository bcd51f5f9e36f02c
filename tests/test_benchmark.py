"""The benchmark runs on a tiny corpus and prints a well-formed table (timings are not tested)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asynclink
from tests.wheels import build_wheel

ROOT = Path(__file__).parent.parent
BENCHMARK = ROOT / "benchmarks" / "run.py"
PROFILE = ROOT / "benchmarks" / "profile_install.py"


def tiny_corpus(corpus: Path) -> Path:
    for name in ("alpha", "beta", "gamma"):
        build_wheel(
            corpus,
            name=name,
            files={f"{name}/__init__.py": "X = 1\n", f"{name}/data.txt": name * 100},
            entry_points=f"[console_scripts]\n{name} = {name}:main\n",
        )
    return corpus


@dataclass(frozen=True)
class BenchmarkRun:
    table: str  #: what the benchmark printed
    results: dict[str, Any]  #: what it wrote with ``--json``


def run_benchmark(
    tmp_path: Path, corpus: Path, *options: str, cwd: Path | None = None
) -> BenchmarkRun:
    """One round of the benchmark on ``corpus`` under ``tmp_path``, which must succeed."""
    done = subprocess.run(
        [
            *[sys.executable, str(BENCHMARK), "--wheels", str(corpus), "--rounds", "1"],
            *["--root", str(tmp_path / "bench"), "--json", str(tmp_path / "results.json")],
            *options,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return BenchmarkRun(done.stdout, json.loads((tmp_path / "results.json").read_text()))


def test_the_benchmark_runs_on_a_tiny_corpus(tmp_path: Path) -> None:
    corpus = tiny_corpus(tmp_path / "corpus")

    run = run_benchmark(tmp_path, corpus, "--scaling")

    results = run.results
    header = next(line for line in run.table.splitlines() if line.startswith("group"))
    assert header.split() == [
        "group",
        "contestant",
        "wall",
        "s",
        "engine",
        "s",
        "cpu",
        "s",
        "rss",
        "MB",
        "files/s",
        "ratio",
    ]
    names = {row["contestant"] for row in results["results"]}
    assert {
        "cp -al",
        "asynclink link hardlink",
        "asynclink hardlink",
        "asynclink cold",
        "pip",
        "python: start",
        "loop lag, every core busy, no install",
        "bare os.link loop",
        "asynclink link hardlink, no helper",
        "inflate the corpus (CPU, one thread)",
        "asynclink install again",
        "asynclink sync to half",
        "asynclink uninstall all",
        "uv pip sync to half",
        "uv pip uninstall all",
        "asynclink in-process hardlink",
        "asynclink in-process cold",
        "asynclink in-process nothing to do",
        "asynclink cold, zlib",
    } <= names
    in_process = next(
        r for r in results["results"] if r["contestant"] == "asynclink in-process copy"
    )
    assert in_process["engine"] > 0 and in_process["worst_loop_lag"] > 0
    assert results["versions"]["python"] == sys.version.split()[0]
    for row in results["results"]:
        assert row["wall"] > 0 and row["cpu"] >= 0 and row["rss_mb"] > 0
        if row["group"] not in ("startup", "bounds", "cancel"):
            assert row["files"] > 0 and row["files_per_second"] > 0
        if row["reference"] in names:
            assert row["ratio"] > 0
    assert [row["factor"] for row in results["scaling"]] == [1, 2, 4]
    assert results["scaling"][2]["files"] == 4 * results["scaling"][0]["files"]
    assert not (tmp_path / "bench").exists()  # it cleans up after itself


def test_a_factor_runs_the_groups_on_renamed_copies_that_install_side_by_side(
    tmp_path: Path,
) -> None:
    corpus = tiny_corpus(tmp_path / "corpus")
    build_wheel(corpus, name="delta", files={"delta-1.0.data/data/share/delta.txt": "d"})

    results = run_benchmark(
        tmp_path, corpus, "--factor", "2", "--groups", "install,process"
    ).results

    assert (results["factor"], results["wheels"]) == (2, 8)
    rows = {row["contestant"]: row for row in results["results"]}
    # pypa installer refuses to overwrite a file: each copy's data file has a name of its own
    assert "installer (loop)" in rows and "asynclink in-process copy, session" in rows


def test_the_process_group_alone_brings_uvs_rows_for_its_ratios(tmp_path: Path) -> None:
    corpus = tiny_corpus(tmp_path / "corpus")

    results = run_benchmark(tmp_path, corpus, "--groups", "process").results

    rows = {row["contestant"]: row for row in results["results"]}
    assert {"uv hardlink", "uv copy", "uv cold"} <= set(rows)
    assert "asynclink hardlink" not in rows  # the install group's own rows are not run
    for name in ("hardlink", "copy", "cold"):
        assert rows[f"asynclink in-process {name}"]["ratio"] > 0


def baseline_copy(directory: Path) -> Path:
    """A copy of this asynclink, as a checkout of another revision would be."""
    shutil.copytree(
        Path(asynclink.__file__).parent,
        directory / "asynclink",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return directory


def test_a_baseline_twins_the_rows_a_change_moves_each_compared_with_its_row(
    tmp_path: Path,
) -> None:
    corpus = tiny_corpus(tmp_path / "corpus")
    baseline = baseline_copy(tmp_path / "baseline")

    run = run_benchmark(
        tmp_path, corpus, "--groups", "install,process", "--baseline", str(baseline)
    )

    rows = {row["contestant"]: row for row in run.results["results"]}
    for name in ("asynclink hardlink", "asynclink in-process hardlink"):
        assert rows[f"{name} (baseline)"]["reference"] == name
        assert rows[f"{name} (baseline)"]["ratio"] > 0
    assert "asynclink hardlink --jobs 1 (baseline)" not in rows
    assert run.results["baseline"]["path"] == str(baseline.resolve())


def test_the_baseline_rows_run_the_baselines_code(tmp_path: Path) -> None:
    # The baseline's engine is broken: every twin fails, the command's (a script) and the
    # in-process ones (``python -c``, which puts its working directory first on its path:
    # run from this checkout's root, it would have imported this checkout).
    corpus = tiny_corpus(tmp_path / "corpus")
    baseline = baseline_copy(tmp_path / "baseline")
    install = baseline / "asynclink" / "_install.py"
    install.write_text(install.read_text() + "\nraise SystemExit(3)\n")

    run = run_benchmark(
        tmp_path, corpus, "--groups", "install,process", "--baseline", str(baseline), cwd=ROOT
    )

    rows = {row["contestant"] for row in run.results["results"]}
    assert {"asynclink hardlink", "asynclink in-process hardlink"} <= rows
    assert not any(row.endswith("(baseline)") for row in rows)
    skipped = [line.split()[1:4] for line in run.table.splitlines() if " skipped: " in line]
    assert ["asynclink", "hardlink", "(baseline)"] in skipped
    assert ["asynclink", "in-process", "hardlink"] in skipped


def test_the_profile_runs_on_a_tiny_corpus(tmp_path: Path) -> None:
    corpus = tiny_corpus(tmp_path / "corpus")

    done = subprocess.run(
        [sys.executable, str(PROFILE), "--wheels", str(corpus), "--rounds", "2", "--cold"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3 wheels, hardlink, cold cache, medians of 2 installs")
    assert any("filesystem thread: link_phase" in line for line in lines)
    assert all(line.rstrip().endswith("ms") for line in lines[1:4])
