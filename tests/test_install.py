"""Installing wheels into a scheme: where each part goes, scripts, metadata, RECORD."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from installer.scripts import Script

from asynclink import (
    InvalidWheelError,
    LinkMode,
    Scheme,
    TargetError,
    WheelFinished,
    WheelLinked,
    WheelUnpacked,
    install_wheels,
    unpack_wheels,
)
from tests.environments import make_venv
from tests.wheels import build_wheel, record_hash

pytestmark = pytest.mark.anyio

INTERPRETER = "/opt/python/bin/python3.11"


@pytest.fixture
def scheme(tmp_path: Path) -> Scheme:
    """A venv-shaped scheme with purelib and platlib apart, so each can be told from the other."""
    env = tmp_path / "env"
    purelib = env / "lib/python3.11/site-packages"
    platlib = env / "lib64/python3.11/site-packages"
    for path in (purelib, platlib, env / "bin"):
        path.mkdir(parents=True)
    return Scheme(
        purelib=str(purelib),
        platlib=str(platlib),
        scripts=str(env / "bin"),
        headers=str(env / "include/site/python3.11"),
        data=str(env),
        interpreter=INTERPRETER,
    )


async def install(tmp_path: Path, scheme: Scheme, **spec: object):  # type: ignore[no-untyped-def]
    options = {
        k: spec.pop(k)
        for k in list(spec)
        if k in {"mode", "requested", "direct_urls", "on_event", "check_tags"}
    }
    path = build_wheel(tmp_path / "dist", **spec)
    options.setdefault("mode", "hardlink")
    return await install_wheels(scheme, [path], cache_dir=tmp_path / "cache", **options)  # type: ignore[arg-type]


def record_rows(site_packages: str, dist_info: str = "demo-1.0.dist-info") -> list[list[str]]:
    with open(os.path.join(site_packages, dist_info, "RECORD"), newline="") as handle:
        return list(csv.reader(handle))


async def test_a_pure_wheel_lands_in_purelib_with_an_exact_record(
    tmp_path: Path, scheme: Scheme
) -> None:
    files = {"demo/__init__.py": "VALUE = 1\n", "demo/sub/data.json": "{}\n"}

    result = await install(tmp_path, scheme, files=files)

    purelib = Path(scheme.purelib)
    assert (purelib / "demo/__init__.py").read_text() == "VALUE = 1\n"
    metadata = (purelib / "demo-1.0.dist-info/METADATA").read_bytes()
    wheel = (purelib / "demo-1.0.dist-info/WHEEL").read_bytes()
    archive = hashlib.sha256((tmp_path / "dist/demo-1.0-py3-none-any.whl").read_bytes())
    source = json.dumps(
        {"sha256": archive.hexdigest(), "wheel": "demo-1.0-py3-none-any.whl"}, sort_keys=True
    ).encode()
    assert json.loads(source) == json.loads(
        (purelib / "demo-1.0.dist-info/asynclink.json").read_text()
    )
    assert record_rows(scheme.purelib) == sorted(
        [
            ["demo-1.0.dist-info/INSTALLER", record_hash(b"asynclink\n"), "10"],
            ["demo-1.0.dist-info/asynclink.json", record_hash(source), str(len(source))],
            ["demo-1.0.dist-info/METADATA", record_hash(metadata), str(len(metadata))],
            ["demo-1.0.dist-info/RECORD", "", ""],
            ["demo-1.0.dist-info/REQUESTED", record_hash(b""), "0"],
            ["demo-1.0.dist-info/WHEEL", record_hash(wheel), str(len(wheel))],
            ["demo/__init__.py", record_hash(b"VALUE = 1\n"), "10"],
            ["demo/sub/data.json", record_hash(b"{}\n"), "3"],
        ]
    )
    (wheel_result,) = result.wheels
    assert (wheel_result.wheel, wheel_result.version) == ("demo-1.0", "1.0")
    assert not os.listdir(scheme.platlib)


@pytest.mark.parametrize("value", ["false", "FALSE", "no"])
async def test_root_is_purelib_false_means_platlib(
    tmp_path: Path, scheme: Scheme, value: str
) -> None:
    wheel_text = f"Wheel-Version: 1.0\nRoot-Is-Purelib: {value}\n"

    await install(tmp_path, scheme, files={"demo/__init__.py": ""}, wheel_text=wheel_text)

    assert (Path(scheme.platlib) / "demo/__init__.py").exists()
    assert not (Path(scheme.purelib) / "demo").exists()


async def test_root_is_purelib_compares_without_case(tmp_path: Path, scheme: Scheme) -> None:
    wheel_text = "Wheel-Version: 1.0\nRoot-Is-Purelib: True\n"
    await install(tmp_path, scheme, files={"demo/__init__.py": ""}, wheel_text=wheel_text)
    assert (Path(scheme.purelib) / "demo/__init__.py").exists()


async def test_every_data_key_goes_to_its_scheme_path(tmp_path: Path, scheme: Scheme) -> None:
    files = {
        "demo/__init__.py": "",
        "demo-1.0.data/purelib/pure_extra.py": "P = 1\n",
        "demo-1.0.data/platlib/plat_extra.py": "Q = 1\n",
        "demo-1.0.data/headers/demo.h": "#define DEMO 1\n",
        "demo-1.0.data/scripts/run.sh": "#!/bin/sh\necho run\n",
        "demo-1.0.data/data/share/demo/conf.toml": "x = 1\n",
    }

    await install(tmp_path, scheme, files=files)

    env = Path(scheme.data)
    assert (Path(scheme.purelib) / "pure_extra.py").read_text() == "P = 1\n"
    assert (Path(scheme.platlib) / "plat_extra.py").read_text() == "Q = 1\n"
    assert (env / "include/site/python3.11/demo/demo.h").read_text() == "#define DEMO 1\n"
    assert (env / "bin/run.sh").read_text() == "#!/bin/sh\necho run\n"
    assert (env / "share/demo/conf.toml").read_text() == "x = 1\n"
    assert not (Path(scheme.purelib) / "demo-1.0.data").exists()
    paths = {row[0] for row in record_rows(scheme.purelib)}
    assert {
        "pure_extra.py",
        "../../../lib64/python3.11/site-packages/plat_extra.py",
        "../../../include/site/python3.11/demo/demo.h",
        "../../../bin/run.sh",
        "../../../share/demo/conf.toml",
    } <= paths


async def test_data_scripts_are_executable_even_if_the_archive_says_not(
    tmp_path: Path, scheme: Scheme
) -> None:
    files = {"demo-1.0.data/scripts/run.sh": "#!/bin/sh\necho run\n"}

    await install(tmp_path, scheme, files=files, mode="copy")

    assert os.access(Path(scheme.scripts) / "run.sh", os.X_OK)


@pytest.mark.parametrize(
    ("first_line", "rest"),
    [
        (b"#!python\n", b"print('hi')\n"),
        (b"#!pythonw\n", b"print('hi')\n"),
        (b"#!python -E\n", b"print('hi')\n"),
        (b"#!python\r\n", b"print('hi')\r\n"),
        (b"#!python", b""),
    ],
    ids=["plain", "pythonw", "arguments", "crlf", "no-newline"],
)
async def test_python_shebangs_in_data_scripts_are_rewritten(
    tmp_path: Path, scheme: Scheme, first_line: bytes, rest: bytes
) -> None:
    files = {"demo-1.0.data/scripts/tool": first_line + rest}

    await install(tmp_path, scheme, files=files)

    installed = Path(scheme.scripts) / "tool"
    content = installed.read_bytes()
    assert content == f"#!{INTERPRETER}\n".encode() + rest
    assert os.access(installed, os.X_OK)
    row = next(r for r in record_rows(scheme.purelib) if r[0] == "../../../bin/tool")
    assert row[1:] == [record_hash(content), str(len(content))]


async def test_a_rewritten_script_is_a_copy_never_the_cached_file(
    tmp_path: Path, scheme: Scheme
) -> None:
    await install(tmp_path, scheme, files={"demo-1.0.data/scripts/tool": "#!python\nprint(1)\n"})
    cached = next((tmp_path / "cache").glob("wheels-v*/*/tree/demo-1.0.data/scripts/tool"))

    assert cached.read_bytes() == b"#!python\nprint(1)\n"
    assert not (Path(scheme.scripts) / "tool").samefile(cached)


@pytest.mark.parametrize(
    "interpreter",
    ["/opt/my python/bin/python3", "/opt/" + "x" * 130 + "/bin/python3"],
    ids=["space", "long"],
)
async def test_awkward_interpreter_paths_get_the_sh_trampoline(
    tmp_path: Path, scheme: Scheme, interpreter: str
) -> None:
    awkward = dataclasses.replace(scheme, interpreter=interpreter)
    files = {"demo-1.0.data/scripts/tool": "#!python\nprint(1)\n"}

    await install(
        tmp_path,
        awkward,
        files=files,
        entry_points="[console_scripts]\ndemo-cli = demo:main\n",
    )

    for name in ("tool", "demo-cli"):
        lines = (Path(scheme.scripts) / name).read_bytes().split(b"\n")
        assert lines[0] == b"#!/bin/sh"
        assert lines[1].startswith(b"'''exec' ") and lines[1].endswith(b' "$0" "$@"')
        assert interpreter.encode() in lines[1]


async def test_console_and_gui_entry_points_become_installers_launchers(
    tmp_path: Path, scheme: Scheme
) -> None:
    entry_points = (
        "[console_scripts]\ndemo-cli = demo.cli:main\nDemo-Upper = demo:run [extra]\n"
        "t\u00f6\u00f6l = demo.cli:Tool.run\n"
        "[gui_scripts]\ndemo-gui = demo.gui:start\n"
    )

    result = await install(
        tmp_path, scheme, files={"demo/__init__.py": ""}, entry_points=entry_points
    )

    expected = {
        "demo-cli": Script("demo-cli", "demo.cli", "main", "console"),
        "Demo-Upper": Script("Demo-Upper", "demo", "run", "console"),
        "t\u00f6\u00f6l": Script("t\u00f6\u00f6l", "demo.cli", "Tool.run", "console"),
        "demo-gui": Script("demo-gui", "demo.gui", "start", "gui"),
    }
    for name, script in expected.items():
        installed = Path(scheme.scripts) / name
        assert installed.read_bytes() == script.generate(INTERPRETER, "posix")[1]
        assert installed.stat().st_mode & 0o111 == 0o111
    assert sorted(result.wheels[0].scripts) == sorted(expected)
    paths = {row[0] for row in record_rows(scheme.purelib)}
    assert {f"../../../bin/{name}" for name in expected} <= paths


async def test_an_entry_point_wins_over_a_data_script_of_the_same_name(
    tmp_path: Path, scheme: Scheme
) -> None:
    await install(
        tmp_path,
        scheme,
        files={"demo/__init__.py": "", "demo-1.0.data/scripts/demo-cli": "#!/bin/sh\nold\n"},
        entry_points="[console_scripts]\ndemo-cli = demo:main\n",
    )

    assert b"from demo import main" in (Path(scheme.scripts) / "demo-cli").read_bytes()
    rows = [r[0] for r in record_rows(scheme.purelib)]
    assert rows.count("../../../bin/demo-cli") == 1


async def test_requested_and_direct_url_are_written_when_asked(
    tmp_path: Path, scheme: Scheme
) -> None:
    direct_url = {"url": "file:///wheels/demo-1.0-py3-none-any.whl", "archive_info": {"hash": "x"}}

    await install(
        tmp_path,
        scheme,
        files={"demo/__init__.py": ""},
        requested=False,
        direct_urls={"demo-1.0-py3-none-any.whl": direct_url},
    )

    info = Path(scheme.purelib) / "demo-1.0.dist-info"
    assert not (info / "REQUESTED").exists()
    assert json.loads((info / "direct_url.json").read_text()) == direct_url
    assert (info / "INSTALLER").read_text() == "asynclink\n"
    rows = {r[0] for r in record_rows(scheme.purelib)}
    assert "demo-1.0.dist-info/direct_url.json" in rows
    assert "demo-1.0.dist-info/REQUESTED" not in rows


async def test_a_direct_url_of_an_archive_gets_its_hash(tmp_path: Path, scheme: Scheme) -> None:
    direct_url = {"url": "file:///wheels/demo-1.0-py3-none-any.whl", "archive_info": {}}

    await install(
        tmp_path,
        scheme,
        files={"demo/__init__.py": ""},
        direct_urls={"demo-1.0-py3-none-any.whl": direct_url},
    )

    info = Path(scheme.purelib) / "demo-1.0.dist-info"
    digest = hashlib.sha256((tmp_path / "dist/demo-1.0-py3-none-any.whl").read_bytes())
    recorded = json.loads((info / "direct_url.json").read_text())
    assert recorded["archive_info"] == {
        "hash": f"sha256={digest.hexdigest()}",
        "hashes": {"sha256": digest.hexdigest()},
    }


async def test_requested_can_name_the_projects_that_were_asked_for(
    tmp_path: Path, scheme: Scheme
) -> None:
    paths = [
        build_wheel(tmp_path / "dist", name=name, files={f"{name}/__init__.py": ""})
        for name in ("top", "dependency")
    ]

    await install_wheels(scheme, paths, cache_dir=tmp_path / "cache", requested=["Top"])

    assert (Path(scheme.purelib) / "top-1.0.dist-info/REQUESTED").exists()
    assert not (Path(scheme.purelib) / "dependency-1.0.dist-info/REQUESTED").exists()


async def test_top_level_pth_files_arrive_after_every_other_file(
    tmp_path: Path, scheme: Scheme
) -> None:
    paths = [
        build_wheel(
            tmp_path / "dist",
            name=f"p{n}",
            files={f"p{n}/__init__.py": "", f"p{n}.pth": f"import p{n}\n"},
        )
        for n in range(4)
    ]
    pth_seen_early: list[str] = []

    def check(event: object) -> None:
        if isinstance(event, WheelFinished):
            pth_seen_early.extend(str(p) for p in Path(scheme.purelib).glob("*.pth"))

    await install_wheels(
        scheme, paths, cache_dir=tmp_path / "cache", jobs=2, on_event=check, mode="copy"
    )

    assert pth_seen_early == []
    assert sorted(p.name for p in Path(scheme.purelib).glob("*.pth")) == [
        f"p{n}.pth" for n in range(4)
    ]


async def test_linked_files_keep_the_hash_from_record_without_rereading(
    tmp_path: Path, scheme: Scheme
) -> None:
    path = build_wheel(tmp_path / "dist", files={"demo/__init__.py": "VALUE = 1\n"})
    (unpacked,) = await unpack_wheels([path], cache_dir=tmp_path / "cache")
    # Same size, other bytes: only a reread would notice.
    (Path(unpacked.tree) / "demo/__init__.py").write_text("VALUE = 2\n")

    await install_wheels(scheme, [path], cache_dir=tmp_path / "cache", mode="copy")

    row = next(r for r in record_rows(scheme.purelib) if r[0] == "demo/__init__.py")
    assert row[1] == record_hash(b"VALUE = 1\n")


async def test_an_unpacked_tree_installs_like_an_archive(tmp_path: Path, scheme: Scheme) -> None:
    path = build_wheel(
        tmp_path / "dist",
        files={"demo/__init__.py": "VALUE = 1\n"},
        entry_points="[console_scripts]\ndemo-cli = demo:main\n",
    )
    (unpacked,) = await unpack_wheels([path], cache_dir=tmp_path / "cache")
    foreign = tmp_path / "elsewhere" / "demo-1.0"
    shutil.copytree(unpacked.tree, foreign)

    result = await install_wheels(scheme, [foreign], cache_dir=tmp_path / "cache2")

    assert (Path(scheme.purelib) / "demo/__init__.py").read_text() == "VALUE = 1\n"
    assert (Path(scheme.scripts) / "demo-cli").exists()
    assert result.wheels[0].archive is None


async def test_an_unpacked_tree_may_spell_its_name_with_underscores(
    tmp_path: Path, scheme: Scheme
) -> None:
    path = build_wheel(tmp_path / "dist", name="foo_bar", files={"foo_bar/__init__.py": ""})
    (unpacked,) = await unpack_wheels([path], cache_dir=tmp_path / "cache")
    tree = tmp_path / "elsewhere" / "foo_bar-1.0"
    shutil.copytree(unpacked.tree, tree)

    result = await install_wheels(scheme, [tree], cache_dir=tmp_path / "cache2")

    assert [w.wheel for w in result.wheels] == ["foo_bar-1.0"]
    assert (Path(scheme.purelib) / "foo_bar-1.0.dist-info/RECORD").exists()


async def test_a_wheel_for_another_interpreter_is_refused(tmp_path: Path, scheme: Scheme) -> None:
    tagged = dataclasses.replace(scheme, tags=("cp311-cp311-linux_x86_64", "py3-none-any"))

    with pytest.raises(InvalidWheelError, match="is not compatible with"):
        await install(
            tmp_path, tagged, files={"demo/__init__.py": ""}, tag="cp312-cp312-linux_x86_64"
        )
    assert not (Path(scheme.purelib) / "demo").exists()

    await install(
        tmp_path,
        tagged,
        files={"demo/__init__.py": ""},
        tag="cp312-cp312-linux_x86_64",
        check_tags=False,
    )
    assert (Path(scheme.purelib) / "demo/__init__.py").exists()


async def test_a_plain_directory_target_must_be_explicit(tmp_path: Path) -> None:
    path = build_wheel(tmp_path / "dist", files={"demo/__init__.py": ""})
    target = tmp_path / "plain"
    target.mkdir()

    with pytest.raises(TargetError, match=r"Scheme\.for_directory"):
        await install_wheels(target, [path], cache_dir=tmp_path / "cache")

    result = await install_wheels(
        Scheme.for_directory(target), [path], cache_dir=tmp_path / "cache", mode=LinkMode.COPY
    )
    assert (target / "demo/__init__.py").exists() and result.files > 0


async def test_a_wheel_is_linked_as_soon_as_it_is_unpacked(tmp_path: Path, scheme: Scheme) -> None:
    # No barrier between phases: with two wheels at a time, the first wheels are linked before
    # the last ones are even unpacked.
    paths = [
        build_wheel(tmp_path / "dist", name=f"w{n}", files={f"w{n}/__init__.py": ""})
        for n in range(6)
    ]
    order: list[tuple[str, str]] = []

    def watch(event: object) -> None:
        if isinstance(event, WheelUnpacked | WheelLinked):
            order.append((type(event).__name__, event.wheel))

    await install_wheels(scheme, paths, cache_dir=tmp_path / "cache", jobs=2, on_event=watch)

    first_linked = order.index(next(e for e in order if e[0] == "WheelLinked"))
    last_unpacked = max(i for i, e in enumerate(order) if e[0] == "WheelUnpacked")
    assert first_linked < last_unpacked
    assert len(order) == 12


async def test_two_wheels_of_one_project_in_one_batch_are_refused(
    tmp_path: Path, scheme: Scheme
) -> None:
    first = build_wheel(tmp_path / "a", files={"demo/__init__.py": ""})
    second = build_wheel(tmp_path / "b", version="2.0", files={"demo/__init__.py": ""})
    message = f"{first.name} and {second.name} both install demo; give only one"

    with pytest.raises(InvalidWheelError, match=re.escape(message)):
        await install_wheels(scheme, [first, second], cache_dir=tmp_path / "cache", jobs=1)

    assert not (Path(scheme.purelib) / "demo").exists()


async def test_a_wheel_named_twice_is_installed_once(tmp_path: Path, scheme: Scheme) -> None:
    wheel = build_wheel(tmp_path, files={"demo/__init__.py": ""})

    result = await install_wheels(scheme, [wheel, wheel], cache_dir=tmp_path / "cache")

    assert [w.wheel for w in result.wheels] == ["demo-1.0"]


async def test_pips_launchers_are_named_for_the_target_interpreter(tmp_path: Path) -> None:
    """A wheel built on Python 3.9 says ``pip3.9``; installed for 3.12 it gets ``pip3.12``."""
    scheme = Scheme.for_directory(tmp_path / "target", interpreter=INTERPRETER)
    scheme = dataclasses.replace(scheme, version="3.12")

    result = await install(
        tmp_path,
        scheme,
        name="pip",
        files={"pip/__init__.py": "def main(): pass\n"},
        entry_points="[console_scripts]\npip = pip:main\npip3 = pip:main\npip3.9 = pip:main\n",
    )

    assert sorted(result.wheels[0].scripts) == ["pip", "pip3", "pip3.12"]
    assert sorted(os.listdir(scheme.scripts)) == ["pip", "pip3", "pip3.12"]


async def test_a_launcher_runs_in_a_venv_whose_path_holds_a_tab(tmp_path: Path) -> None:
    """A ``#!`` line ends at whitespace: such a path gets the ``/bin/sh`` trampoline."""
    venv = make_venv(tmp_path / "a\tb")
    wheel = build_wheel(
        tmp_path / "dist",
        files={"demo/__init__.py": "def main():\n    print('ran')\n"},
        entry_points="[console_scripts]\ndemo-run = demo:main\n",
    )

    await install_wheels(venv, [wheel], cache_dir=tmp_path / "cache")

    done = subprocess.run([venv / "bin" / "demo-run"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran\n"


async def test_an_interpreter_path_that_is_not_utf8_is_refused_for_scripts(
    tmp_path: Path,
) -> None:
    """A script's source is UTF-8: no ``#!`` line or trampoline can name such a path."""
    scheme = Scheme.for_directory(tmp_path / "env", interpreter=os.fsdecode(b"/opt/py\xff/python"))
    wheel = build_wheel(tmp_path / "dist", entry_points="[console_scripts]\nrun = demo:main\n")

    with pytest.raises(TargetError, match="is not UTF-8, so no script can name it"):
        await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")

    assert not (tmp_path / "env" / "demo").exists()
