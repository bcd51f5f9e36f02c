"""The command line's lifecycle commands (install again, upgrade, sync, uninstall, list, cache)
and its conventions (``--version``, ``-q``/``-v``, one-line usage errors, JSON schema 1)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.commandline import asynclink, install_into
from tests.environments import another_installer, make_venv
from tests.trees import snapshot
from tests.wheels import build_wheel

PYTHON = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def inodes_and_mtimes(root: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for path in [root, *root.rglob("*")]:
        status = path.lstat()
        found[str(path)] = (status.st_ino, status.st_mtime_ns)
    return found


def ok(*arguments: str | os.PathLike[str], env: dict[str, str] | None = None) -> tuple[str, str]:
    done = asynclink(*arguments, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_a_second_identical_install_checks_and_changes_nothing(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels))
    before = inodes_and_mtimes(venv)

    _, err = ok(*install_into(venv, tmp_path / "cache", wheels))

    assert err.startswith("Checked 2 packages, installed 0 in ")
    assert "+ alpha" not in err
    assert inodes_and_mtimes(venv) == before


def test_the_json_of_a_second_install_says_every_wheel_was_skipped(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels))

    out, _ = ok(*install_into(venv, tmp_path / "cache", "--json", wheels))

    report = json.loads(out)
    assert (report["schema"], report["command"], report["files"]) == (1, "install", 0)
    assert {(w["project"], w["action"]) for w in report["wheels"]} == {
        ("alpha", "skipped"),
        ("beta", "skipped"),
    }


def test_a_second_install_waits_for_another_installer_at_work(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    """Skipping without the lock is only for a target no one else is changing."""
    ok(*install_into(venv, tmp_path / "cache", wheels))

    with another_installer(site_packages(venv)):
        done = asynclink(*install_into(venv, tmp_path / "cache", "--lock-timeout", "0", wheels))

    assert done.returncode == 1
    assert "asynclink: error: " in done.stderr and "lock" in done.stderr


def test_reinstall_installs_again(tmp_path: Path, wheels: Path, venv: Path) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels))

    out, _ = ok(*install_into(venv, tmp_path / "cache", "--reinstall", "--json", wheels))

    assert {w["action"] for w in json.loads(out)["wheels"]} == {"reinstalled"}


def test_an_upgrade_shows_the_old_version_going_and_the_new_one_coming(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels / "beta-1.0-py3-none-any.whl"))
    newer = build_wheel(tmp_path / "newer", name="beta", version="2.0", files={"beta/x.py": ""})

    _, err = ok(*install_into(venv, tmp_path / "cache", newer))

    assert "  - beta 1.0\n  + beta 2.0" in err
    assert not (site_packages(venv) / "beta/__init__.py").exists()


def test_the_json_of_an_upgrade_names_the_project_the_action_and_the_old_version(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels / "beta-1.0-py3-none-any.whl"))
    newer = build_wheel(tmp_path / "newer", name="beta", version="2.0", files={"beta/x.py": ""})

    out, _ = ok(*install_into(venv, tmp_path / "cache", "--json", newer))

    report = json.loads(out)
    assert (report["schema"], report["command"]) == (1, "install")
    (wheel,) = report["wheels"]
    assert (wheel["project"], wheel["action"], wheel["replaced"]) == ("beta", "upgraded", "1.0")


def test_files_given_on_the_command_line_are_recorded_as_direct_urls(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    archive = wheels / "beta-1.0-py3-none-any.whl"

    ok(*install_into(venv, tmp_path / "cache", archive))

    recorded = json.loads((site_packages(venv) / "beta-1.0.dist-info/direct_url.json").read_text())
    assert recorded["url"] == archive.as_uri()
    assert recorded["archive_info"]["hash"].startswith("sha256=")


def test_a_direct_url_is_the_normalised_absolute_path_percent_encoded(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    """As pip records it: ``..`` resolved, a space and a non-ASCII letter percent-encoded."""
    odd = tmp_path / "wheel house é"
    (odd / "sub").mkdir(parents=True)
    archive = odd / "beta-1.0-py3-none-any.whl"
    archive.write_bytes((wheels / archive.name).read_bytes())

    ok(*install_into(venv, tmp_path / "cache", f"{odd}/sub/../{archive.name}"))

    recorded = json.loads((site_packages(venv) / "beta-1.0.dist-info/direct_url.json").read_text())
    assert recorded["url"] == archive.as_uri()
    assert "%20" in recorded["url"] and "%C3%A9" in recorded["url"]


def test_no_direct_url_leaves_it_out(tmp_path: Path, wheels: Path, venv: Path) -> None:
    ok(*install_into(venv, tmp_path / "cache", "--no-direct-url", wheels))

    assert not (site_packages(venv) / "beta-1.0.dist-info/direct_url.json").exists()


def test_prefix_installs_in_the_interpreters_layout_below_it(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    prefix = tmp_path / "prefix"

    ok(
        "install", "--python", venv / "bin/python", "--prefix", prefix,
        "--cache-dir", tmp_path / "cache", wheels,
    )  # fmt: skip

    assert (prefix / "lib" / PYTHON / "site-packages/alpha/__init__.py").is_file()
    assert (prefix / "bin/alpha").is_file()
    assert not (site_packages(venv) / "alpha").exists()


def test_root_moves_every_directory_of_the_target_below_it(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    root = tmp_path / "root"

    ok(
        "install", "--venv", venv, "--root", root,
        "--cache-dir", tmp_path / "cache", wheels,
    )  # fmt: skip

    moved = root / site_packages(venv).relative_to("/")
    assert (moved / "alpha/__init__.py").is_file()
    assert (root / (venv / "bin/alpha").relative_to("/")).is_file()
    assert not (site_packages(venv) / "alpha").exists()


def test_root_refuses_a_symlink_below_it_that_leads_elsewhere(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    """``ROOT/tmp -> elsewhere`` would put the whole install (and an uninstall's deletions)
    there."""
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    elsewhere.mkdir()
    root.mkdir()
    first = venv.relative_to("/").parts[0]
    (root / first).symlink_to(elsewhere)

    done = asynclink(
        "install", "--venv", venv, "--root", root, "--cache-dir", tmp_path / "cache", wheels
    )

    assert done.returncode == 2
    assert "through a symlink; refusing to install there" in done.stderr
    assert list(elsewhere.iterdir()) == []


def test_prefix_does_not_go_with_target(tmp_path: Path, wheels: Path) -> None:
    done = asynclink("install", "--target", tmp_path / "t", "--prefix", tmp_path / "p", wheels)

    assert done.returncode == 2
    assert "--prefix and --root go with an interpreter" in done.stderr


def test_uninstall_removes_a_distribution_and_its_script(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels))

    _, err = ok("uninstall", "--venv", venv, "--cache-dir", tmp_path / "cache", "alpha")

    assert err.startswith("Uninstalled 1 package")
    assert "  - alpha 1.0" in err
    assert not (venv / "bin/alpha").exists()
    assert not (site_packages(venv) / "alpha").exists()
    assert (site_packages(venv) / "beta/__init__.py").exists()


def test_uninstall_dry_run_removes_nothing(tmp_path: Path, wheels: Path, venv: Path) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels))
    before = snapshot(tmp_path)

    out, _ = ok(
        "uninstall", "--venv", venv, "--cache-dir", tmp_path / "cache",
        "--dry-run", "--json", "alpha",
    )  # fmt: skip

    assert snapshot(tmp_path) == before
    report = json.loads(out)
    assert (report["schema"], report["command"], report["dry_run"]) == (1, "uninstall", True)
    assert [r["project"] for r in report["removed"]] == ["alpha"]
    assert report["files"] == report["removed"][0]["files"] > 0


def test_uninstalling_a_name_that_is_not_installed_exits_1(tmp_path: Path, venv: Path) -> None:
    done = asynclink("uninstall", "--venv", venv, "--cache-dir", tmp_path / "cache", "nope")

    assert done.returncode == 1
    assert done.stderr.startswith("asynclink: error: not installed in ")
    assert "nope" in done.stderr and "--missing-ok" in done.stderr


def test_missing_ok_lets_an_uninstall_go_on(tmp_path: Path, wheels: Path, venv: Path) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels))

    _, err = ok(
        "uninstall", "--venv", venv, "--cache-dir", tmp_path / "cache",
        "--missing-ok", "nope", "beta",
    )  # fmt: skip

    assert "  - beta 1.0" in err and "not installed: nope" in err


def test_sync_removes_what_no_wheel_is_for_and_keeps_pip(tmp_path: Path, wheels: Path) -> None:
    venv = make_venv(tmp_path / "venv", with_pip=True)
    extra = build_wheel(tmp_path / "extra", name="gamma", files={"gamma.py": ""})
    ok(*install_into(venv, tmp_path / "cache", extra))

    _, err = ok("sync", "--venv", venv, "--cache-dir", tmp_path / "cache", wheels)

    assert "  + alpha 1.0" in err and "  - gamma 1.0" in err
    assert not (site_packages(venv) / "gamma.py").exists()
    assert list(site_packages(venv).glob("pip-*.dist-info"))


def test_sync_dry_run_says_what_it_would_remove(tmp_path: Path, wheels: Path, venv: Path) -> None:
    extra = build_wheel(tmp_path / "extra", name="gamma", files={"gamma.py": ""})
    ok(*install_into(venv, tmp_path / "cache", extra, wheels / "beta-1.0-py3-none-any.whl"))
    before = snapshot(tmp_path)

    out, _ = ok(
        "sync", "--venv", venv, "--cache-dir", tmp_path / "cache", "--dry-run", "--json", wheels
    )

    assert snapshot(tmp_path) == before
    report = json.loads(out)
    actions = {w["project"]: w["action"] for w in report["wheels"]}
    assert actions == {"alpha": "installed", "beta": "skipped"}
    assert [r["project"] for r in report["removed"]] == ["gamma"]


def test_list_shows_name_version_and_installer(tmp_path: Path, wheels: Path, venv: Path) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels))

    out, _ = ok("list", "--venv", venv, "--cache-dir", tmp_path / "cache")

    lines = out.splitlines()
    assert lines[0].split() == ["Package", "Version", "Installer"]
    assert [line.split() for line in lines[1:]] == [
        ["alpha", "1.0", "asynclink"],
        ["beta", "1.0", "asynclink"],
    ]


def test_list_json_names_the_wheel_each_came_from(tmp_path: Path, wheels: Path, venv: Path) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels))

    out, _ = ok("list", "--venv", venv, "--cache-dir", tmp_path / "cache", "--json")

    report = json.loads(out)
    assert (report["schema"], report["command"]) == (1, "list")
    beta = next(d for d in report["distributions"] if d["project"] == "beta")
    assert beta["wheel"] == "beta-1.0-py3-none-any.whl" and len(beta["sha256"]) == 64


def test_cache_dir_prints_where_the_cache_is(tmp_path: Path) -> None:
    out, _ = ok("cache", "dir", env={"ASYNCLINK_CACHE_DIR": str(tmp_path / "here")})

    assert out == f"{tmp_path / 'here'}\n"


def test_cache_verify_finds_an_edited_file_and_exits_1(
    tmp_path: Path, wheels: Path, venv: Path
) -> None:
    ok(*install_into(venv, tmp_path / "cache", "--link-mode=hardlink", wheels))
    (site_packages(venv) / "beta/__init__.py").write_text("B = 2\n")  # edits the cache too

    done = asynclink("cache", "verify", "--cache-dir", tmp_path / "cache", "--json")

    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert (report["schema"], report["command"], report["entries"]) == (1, "cache verify", 2)
    assert len(report["damaged"]) == 1 and "beta" in report["damaged"][0]


def test_cache_clean_empties_the_cache(tmp_path: Path, wheels: Path, venv: Path) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels))

    out, _ = ok("cache", "clean", "--cache-dir", tmp_path / "cache", "--json")

    assert json.loads(out)["removed"]
    assert not list((tmp_path / "cache").glob("wheels-v*/*/tree"))


def test_version_prints_the_installed_version() -> None:
    out, _ = ok("--version")

    assert out.startswith("asynclink ") and out.split()[1][0].isdigit()


def test_a_usage_error_is_one_line_of_usage_and_the_error() -> None:
    done = asynclink("install")

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "usage: asynclink install [options] WHEEL_OR_DIR...",
        "asynclink install: error: the following arguments are required: WHEEL_OR_DIR",
    ]


def test_quiet_before_the_command_silences_it(tmp_path: Path, wheels: Path, venv: Path) -> None:
    done = asynclink("-q", *install_into(venv, tmp_path / "cache", wheels))

    assert done.returncode == 0 and done.stderr == ""


def test_verbose_shows_what_the_engine_logs(tmp_path: Path, wheels: Path, venv: Path) -> None:
    ok(*install_into(venv, tmp_path / "cache", wheels))
    newer = build_wheel(tmp_path / "newer", name="beta", version="2.0", files={"beta/x.py": ""})

    _, err = ok("-vv", *install_into(venv, tmp_path / "cache", newer))

    assert "asynclink: debug: " in err or "asynclink: info: " in err


def test_cache_dir_json_is_a_schema_1_report(tmp_path: Path) -> None:
    out, _ = ok("cache", "dir", "--json", "--cache-dir", tmp_path / "here")

    report = json.loads(out)
    assert (report["schema"], report["command"]) == (1, "cache dir")
    assert report["cache_dir"] == str(tmp_path / "here")
