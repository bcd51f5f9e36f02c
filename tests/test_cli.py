"""The command line, run as a user runs it: a subprocess, its exit code, its output (and, where
a signal must arrive at one set moment, its signal handling in this process)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from asynclink._cli import STOP_SIGNALS, Interrupted, _catch_stop_signals, _interruptible
from asynclink._scheme import INTERPRETER_MEMOS
from tests.commandline import ASYNCLINK, asynclink, clean_environment, install_into
from tests.inotify import DirectoryWatch
from tests.trees import snapshot
from tests.wheels import build_wheel


def test_install_a_directory_of_wheels_into_a_venv(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    done = asynclink(*install_into(venv, tmp_path / "cache", wheels))

    assert done.returncode == 0, done.stderr
    assert "+ alpha 1.0" in done.stderr and "+ beta 1.0" in done.stderr
    assert "Installed 2 packages" in done.stderr
    assert done.stdout == ""
    ran = subprocess.run([venv / "bin/alpha"], capture_output=True, text=True, check=True)
    assert ran.stdout == "alpha!\n"


def test_json_reports_every_wheel(tmp_path: Path, wheels: Path, venv: Path) -> None:
    done = asynclink(*install_into(venv, tmp_path / "cache", "--json", "--link-mode=copy", wheels))

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dry_run"] is False
    assert sorted(w["wheel"] for w in report["wheels"]) == ["alpha-1.0", "beta-1.0"]
    assert {w["mode"] for w in report["wheels"]} == {"copy"}
    alpha = next(w for w in report["wheels"] if w["wheel"] == "alpha-1.0")
    assert alpha["scripts"] == ["alpha"] and alpha["files"] > 0 and alpha["bytes"] > 0
    assert report["files"] == sum(w["files"] for w in report["wheels"])
    assert report["conflicts"] == []
    assert report["target"]["interpreter"] == str(venv / "bin/python")


def test_the_link_mode_comes_from_the_environment(tmp_path: Path, wheels: Path, venv: Path) -> None:
    done = asynclink(
        *install_into(venv, tmp_path / "cache", "--json", wheels),
        env={"ASYNCLINK_LINK_MODE": "symlink"},
    )

    assert done.returncode == 0, done.stderr
    assert {w["mode"] for w in json.loads(done.stdout)["wheels"]} == {"symlink"}
    assert next(venv.glob("lib/python*/site-packages/beta/__init__.py")).is_symlink()


def test_the_active_virtual_environment_is_the_default_target(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    done = asynclink(
        "install", "--cache-dir", tmp_path / "cache", wheels, env={"VIRTUAL_ENV": str(venv)}
    )

    assert done.returncode == 0, done.stderr
    assert list(venv.glob("lib/python*/site-packages/alpha/__init__.py"))


def test_target_installs_into_a_plain_directory(tmp_path: Path, wheels: Path) -> None:
    done = asynclink(
        "install",
        "--target",
        tmp_path / "plain",
        "--cache-dir",
        tmp_path / "cache",
        wheels / "beta-1.0-py3-none-any.whl",
    )

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "plain/beta/__init__.py").read_text() == "B = 1\n"


def test_target_refuses_a_wheel_for_another_platform(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", name="win", tag="cp27-cp27m-win32")

    done = asynclink(
        "install", "--target", tmp_path / "plain", "--cache-dir", tmp_path / "cache", wheel
    )

    assert done.returncode == 1
    assert "win-1.0-cp27-cp27m-win32.whl" in done.stderr and "is not compatible" in done.stderr
    assert not (tmp_path / "plain/win").exists()


def test_a_failed_batch_announces_no_wheel(tmp_path: Path, wheels: Path) -> None:
    """alpha is placed first, then beta fails: the batch is rolled back, so no ``+ alpha``."""
    target = tmp_path / "plain"
    (target / "beta/__init__.py").mkdir(parents=True)

    done = asynclink(
        "install", "--jobs", "1", "--target", target, "--cache-dir", tmp_path / "cache", wheels
    )

    assert done.returncode == 1
    assert "directory is in the way" in done.stderr
    assert "+ " not in done.stderr and "Installed" not in done.stderr
    assert not (target / "alpha").exists()


def test_target_checks_the_tags_the_cache_remembers_for_this_interpreter(
    tmp_path: Path, wheels: Path
) -> None:
    """The tags come from the cache's memo of the interpreter, as a venv's do, instead of
    being worked out again by every command."""
    cache = tmp_path / "cache"
    first = asynclink("install", "--target", tmp_path / "one", "--cache-dir", cache, wheels)
    assert first.returncode == 0, first.stderr
    for memo in (cache / INTERPRETER_MEMOS).iterdir():
        saved = json.loads(memo.read_text())
        saved["scheme"]["tags"] = ["cp27-cp27m-win32"]
        memo.write_text(json.dumps(saved))

    done = asynclink("install", "--target", tmp_path / "two", "--cache-dir", cache, wheels)

    assert done.returncode == 1
    assert "is not compatible" in done.stderr and "cp27-cp27m-win32" in done.stderr


def test_dry_run_writes_nothing(tmp_path: Path, wheels: Path, venv: Path) -> None:
    before = snapshot(tmp_path)

    done = asynclink(*install_into(venv, tmp_path / "cache", "--dry-run", "--json", wheels))

    assert done.returncode == 0, done.stderr
    assert snapshot(tmp_path) == before
    report = json.loads(done.stdout)
    assert report["dry_run"] is True
    assert report["schema"] == 1 and report["files"] == sum(w["files"] for w in report["wheels"])
    destinations = {f["destination"] for w in report["wheels"] for f in w["planned"]}
    site = next(venv.glob("lib/python*/site-packages"))
    assert str(site / "alpha/__init__.py") in destinations
    assert str(venv / "bin/alpha") in destinations
    assert str(site / "beta-1.0.dist-info/RECORD") in destinations


def test_dry_run_says_what_would_be_installed(tmp_path: Path, wheels: Path, venv: Path) -> None:
    done = asynclink(*install_into(venv, tmp_path / "cache", "--dry-run", wheels))

    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("Would install 2 packages")
    assert "  + alpha 1.0" in done.stderr and "link  " not in done.stderr


def test_dry_run_with_verbose_lists_every_file(tmp_path: Path, wheels: Path, venv: Path) -> None:
    done = asynclink(*install_into(venv, tmp_path / "cache", "--dry-run", "-v", wheels))

    assert done.returncode == 0, done.stderr
    site = next(venv.glob("lib/python*/site-packages"))
    assert f"link  {site / 'alpha/__init__.py'}" in done.stderr
    assert f"write {venv / 'bin/alpha'}" in done.stderr


def test_a_reader_that_goes_away_gets_exit_1_without_a_traceback(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    """``asynclink install --json ... | head -c 10``: the report cannot be delivered."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte is written
    try:
        done = subprocess.run(
            [*ASYNCLINK, *install_into(venv, tmp_path / "cache", "--dry-run", "--json", wheels)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_environment(),
            check=False,
        )
    finally:
        os.close(write_end)

    assert done.returncode == 1
    assert done.stderr == ""


def test_quiet_prints_nothing_on_success(tmp_path: Path, wheels: Path, venv: Path) -> None:
    done = asynclink(*install_into(venv, tmp_path / "cache", "-q", wheels))

    assert done.returncode == 0
    assert (done.stdout, done.stderr) == ("", "")


def test_a_broken_wheel_exits_1_naming_the_wheel_and_the_entry(tmp_path: Path, venv: Path) -> None:
    broken = build_wheel(
        tmp_path / "dist", files={"demo/__init__.py": ""}, extra=[("../escape.py", b"")]
    )

    done = asynclink(*install_into(venv, tmp_path / "cache", broken))

    assert done.returncode == 1
    assert "demo-1.0-py3-none-any.whl" in done.stderr
    assert "'../escape.py'" in done.stderr and "path leaves the wheel" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_a_stop_signal_while_waiting_exits_128_plus_it_and_changes_nothing(
    tmp_path: Path, wheels: Path, venv: Path, signum: int, status: int
) -> None:
    """Ctrl-C, a service manager's stop, a closed terminal: while waiting for another
    installer's lock, each ends the command cleanly and leaves the venv as it was."""
    (site_packages,) = venv.glob("lib/python*/site-packages")
    other_installer = os.open(site_packages / ".asynclink-lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(other_installer, fcntl.LOCK_EX)
    before = snapshot(venv)
    command = [*ASYNCLINK, *install_into(venv, tmp_path / "cache", wheels)]
    with subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=clean_environment()
    ) as process:
        assert process.stderr is not None
        try:
            assert "waiting for another installer" in process.stderr.readline()
            process.send_signal(signum)
            assert process.wait(timeout=30) == status
            assert process.stderr.read().strip() == "asynclink: interrupted"
        finally:
            process.kill()
            os.close(other_installer)

    assert snapshot(venv) == before


def test_a_warning_reads_like_an_error_does_and_appears_once(tmp_path: Path, venv: Path) -> None:
    pycache = ["demo/__pycache__/a.cpython-311.pyc", "demo/__pycache__/b.cpython-311.pyc"]
    build_wheel(tmp_path / "dist", files={"demo/__init__.py": "", **dict.fromkeys(pycache, b"\0")})

    done = asynclink(*install_into(venv, tmp_path / "cache", tmp_path / "dist"))

    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "__pycache__" in line]
    assert line.startswith("asynclink: warning: demo-1.0-py3-none-any.whl: skipped 2 file(s)")
    assert all(name in line for name in pycache)
    assert "_check_members" not in done.stderr and "Warning:" not in done.stderr


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def test_sigterm_while_unpacking_rolls_back_and_leaves_no_staging_lock_or_helper(
    tmp_path: Path, venv: Path
) -> None:
    """The signal arrives the moment the first extraction's staging directory appears."""
    directory = tmp_path / "wheelhouse"
    for name in ("big", "large"):
        files: dict[str, str | bytes] = {f"{name}/m{n}.py": f"# {n}\n" * 50 for n in range(1500)}
        files[f"{name}/blob.bin"] = os.urandom(3 << 20)
        build_wheel(directory, name=name, files=files)
    cache = tmp_path / "cache"
    (cache / "tmp").mkdir(parents=True)
    before = snapshot(venv)
    command = [*ASYNCLINK, *install_into(venv, cache, directory, "--jobs", "2")]
    with (
        DirectoryWatch(cache / "tmp") as watch,
        subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, env=clean_environment()
        ) as process,
    ):
        try:
            watch.wait_for("create")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 143
            assert process.stderr is not None
            stderr = process.stderr.read()
        finally:
            process.kill()

    assert stderr.strip().endswith("asynclink: interrupted") and "Traceback" not in stderr
    assert snapshot(venv) == before
    assert list((cache / "tmp").iterdir()) == []
    assert _processes_mentioning(str(cache)) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["install", "--venv", "{venv}", "--link-mode", "teleport", "{wheels}"],
            "expected one of clone, copy, hardlink, symlink, reflink",
        ),
        (["install", "--venv", "{venv}", "--jobs", "0", "{wheels}"], "must be at least 1"),
        (["install", "--venv", "{venv}", "{tmp}/nothing.whl"], "no such file or directory"),
        (["install", "{wheels}"], "name a target"),
        (
            ["install", "--venv", "{venv}", "--python", "{venv}/bin/python", "{wheels}"],
            "not allowed with argument",
        ),
        (["install", "--venv", "{tmp}/missing", "{wheels}"], "no such directory"),
        (["install", "--venv", "{tmp}", "{wheels}"], "is not a virtual environment"),
        (["install", "--venv", "{venv}", "{tmp}/empty"], "holds no .whl files"),
        (["uninstall", "x"], "name a target"),
        (["remove", "x"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    tmp_path: Path, wheels: Path, venv: Path, arguments: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    filled = [a.format(venv=venv, wheels=wheels, tmp=tmp_path) for a in arguments]

    done = asynclink(*filled, cwd=tmp_path)

    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_link_mode_in_the_environment_exits_2(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    done = asynclink("install", "--venv", venv, wheels, env={"ASYNCLINK_LINK_MODE": "nope"})

    assert done.returncode == 2
    assert "ASYNCLINK_LINK_MODE" in done.stderr


def test_help_lists_the_commands_and_examples() -> None:
    done = asynclink("--help")

    assert done.returncode == 0
    for word in ("install", "sync", "uninstall", "list", "cache", "--version", "examples:"):
        assert word in done.stdout


@pytest.mark.parametrize("says", ["hello", "{}", "[1]", '{"purelib": 1}', "\\xff"])
def test_an_interpreter_that_answers_oddly_is_a_one_line_error(tmp_path: Path, says: str) -> None:
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nprintf '{says}'\n")
    python.chmod(0o755)

    done = asynclink("list", "--python", python, "--cache-dir", tmp_path / "cache")

    assert done.returncode == 2
    assert done.stderr.startswith(f"asynclink: error: {python} does not answer as a Python")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_install_help_lists_the_options() -> None:
    done = asynclink("install", "--help")

    assert done.returncode == 0
    for option in (
        "--python",
        "--venv",
        "--target",
        "--link-mode",
        "--cache-dir",
        "--jobs",
        "--no-conflict-check",
        "--quiet",
        "--json",
        "--dry-run",
        "--reinstall",
        "--prefix",
        "--root",
        "--no-direct-url",
        "--break-system-packages",
    ):
        assert option in done.stdout


def test_a_terminal_gets_the_live_display(tmp_path: Path, wheels: Path, venv: Path) -> None:
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*ASYNCLINK, *install_into(venv, tmp_path / "cache", wheels)],
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        env={**clean_environment(), "COLUMNS": "100"},
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the other side closed: the process is done
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)

    assert process.wait() == 0
    text = output.decode(errors="replace")
    assert "Installed 2 packages" in text
    assert "\x1b[" in text  # rich drew on the terminal


@pytest.fixture
def stop_signals_restored() -> Iterator[None]:
    """The command's handlers replace pytest's for the test, then pytest's come back."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_stop_signal_during_the_rollback_does_not_cut_it_short(
    stop_signals_restored: None, second: signal.Signals
) -> None:
    """The first signal cancels the work; the second arrives while its shielded clean-up (the
    rollback) runs, which goes on to the end; the command then stops for the first."""
    cleaned_up: list[bool] = []

    async def work() -> int:
        os.kill(os.getpid(), signal.SIGHUP)
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                os.kill(os.getpid(), second)
                for _ in range(100):  # the loop sees the signal within a turn or two
                    await anyio.lowlevel.checkpoint()
                cleaned_up.append(True)
        return 0

    _catch_stop_signals()
    with pytest.raises(Interrupted) as stopped:
        anyio.run(_interruptible, work)

    assert cleaned_up == [True]
    assert stopped.value.signum == signal.SIGHUP


def test_list_prints_no_control_character_from_the_target(tmp_path: Path) -> None:
    """Another installer's names are the target's to choose: an escape sequence in them would
    reach the terminal."""
    info = tmp_path / "plain" / "demo-0.5.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo\x1b[2J\nVersion: 0.5\n")
    (info / "INSTALLER").write_text("pip\x1b]0;pwned\x07\n")
    (info / "RECORD").write_text("")

    done = asynclink("list", "--target", tmp_path / "plain", "--cache-dir", tmp_path / "cache")

    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "pip?]0;pwned?" in done.stdout


def test_an_error_quoting_a_wheels_metadata_prints_no_control_character(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path / "dist",
        name="demo",
        metadata_text="Metadata-Version: 2.1\nName: demo\nVersion: 1.0\x1b]0;pwned\x07\x9b2J\n",
    )

    done = asynclink("install", "--target", tmp_path / "t", "--cache-dir", tmp_path / "c", wheel)

    assert done.returncode == 1
    assert "Version: 1.0?]0;pwned??2J" in done.stderr
    assert not any(c in done.stderr for c in "\x1b\x07\x9b")
