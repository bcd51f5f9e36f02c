"""LinkMode: names, aliases, defaults and the fallback chain."""

from __future__ import annotations

import pytest

from asynclink import LinkMode, default_link_mode


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("clone", LinkMode.CLONE),
        ("reflink", LinkMode.CLONE),
        ("COPY", LinkMode.COPY),
        (" hardlink ", LinkMode.HARDLINK),
        ("symlink", LinkMode.SYMLINK),
    ],
)
def test_modes_parse_from_strings(text: str, mode: LinkMode) -> None:
    assert LinkMode(text) is mode
    assert LinkMode.parse(text) is mode


def test_an_unknown_mode_names_the_choices() -> None:
    with pytest.raises(ValueError, match="expected one of clone, copy, hardlink, symlink, reflink"):
        LinkMode.parse("teleport")


def test_the_fallback_chain_is_uvs() -> None:
    assert LinkMode.CLONE.fallback is LinkMode.HARDLINK
    assert LinkMode.HARDLINK.fallback is LinkMode.COPY
    assert LinkMode.SYMLINK.fallback is LinkMode.COPY
    assert LinkMode.COPY.fallback is None


@pytest.mark.parametrize(
    ("platform", "mode"),
    [("linux", LinkMode.CLONE), ("darwin", LinkMode.CLONE), ("win32", LinkMode.HARDLINK)],
)
def test_the_default_is_clone_on_linux_and_macos(platform: str, mode: LinkMode) -> None:
    assert default_link_mode(platform) is mode


def test_a_mode_prints_as_its_name() -> None:
    assert str(LinkMode.HARDLINK) == "hardlink"


@pytest.mark.parametrize(
    "name", ["Foo.Bar_baz", "django", "PyYAML", "zope.interface", "a--b__c..d", "Ruamel.YAML-clib"]
)
def test_our_name_normalisation_is_packagings(name: str) -> None:
    from packaging.utils import canonicalize_name

    from asynclink._fsutil import canonical_name

    assert canonical_name(name) == canonicalize_name(name)
