"""Link modes: what each is called, which one is the default, and where each falls back to."""

from __future__ import annotations

import enum
import errno
import os
import sys

__all__ = ["LinkMode", "default_link_mode"]


class LinkMode(enum.Enum):
    """How a file of an unpacked wheel gets into site-packages.

    ``LinkMode("reflink")`` is ``LinkMode.CLONE``, as in uv; parsing ignores case and
    surrounding blanks so the value can come from a command line or an environment variable.
    """

    CLONE = "clone"
    """Copy-on-write clone (reflink): shares blocks with the cache, edits stay private."""
    COPY = "copy"
    """A full copy that keeps the permission bits."""
    HARDLINK = "hardlink"
    """A hard link: the installed file *is* the cached file."""
    SYMLINK = "symlink"
    """A symbolic link to the file in the cache."""

    @classmethod
    def _missing_(cls, value: object) -> LinkMode | None:
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "reflink":
                return cls.CLONE
            for mode in cls:
                if mode.value == text:
                    return mode
        return None

    @classmethod
    def parse(cls, value: str | LinkMode) -> LinkMode:
        """Read a mode from a string; the error lists the accepted spellings."""
        if isinstance(value, LinkMode):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join([m.value for m in cls] + ["reflink"])
            raise ValueError(f"unknown link mode {value!r}; expected one of {choices}") from None

    @property
    def fallback(self) -> LinkMode | None:
        """The next mode to try when this one cannot work between two filesystems.

        The chain of current uv (``crates/uv-fs/src/link.rs``): clone -> hardlink -> copy,
        symlink -> copy. Copy has nowhere to go.
        """
        return _FALLBACK[self]

    def __str__(self) -> str:
        return self.value


_FALLBACK: dict[LinkMode, LinkMode | None] = {
    LinkMode.CLONE: LinkMode.HARDLINK,
    LinkMode.HARDLINK: LinkMode.COPY,
    LinkMode.SYMLINK: LinkMode.COPY,
    LinkMode.COPY: None,
}


def default_link_mode(platform: str = sys.platform) -> LinkMode:
    """Clone on Linux and macOS, hardlink elsewhere: uv's default since 0.10.5.

    Cloning gives each environment its own copy-on-write file, so editing an installed file
    never edits the cache; where the filesystem cannot clone, the fallback chain takes over.
    """
    if platform.startswith("linux") or platform == "darwin":
        return LinkMode.CLONE
    return LinkMode.HARDLINK


#: The errors that mean "this mode cannot work between these two places" rather than "this
#: file is broken": cross-device, unsupported by the filesystem, or not permitted. (``EMLINK``,
#: too many links to one source file, is neither: the hard-link loop copies that file instead.)
UNSUPPORTED_ERRNOS = frozenset(
    code
    for code in (
        errno.EXDEV,
        errno.EOPNOTSUPP,
        getattr(errno, "ENOTSUP", errno.EOPNOTSUPP),
        errno.EPERM,
        errno.EACCES,
        errno.EINVAL,
        errno.ENOTTY,
        errno.ENOSYS,
        errno.EBADF,
    )
)


def is_unsupported(error: OSError) -> bool:
    """Whether ``error`` from a link attempt means the mode, not the file, is at fault."""
    return error.errno in UNSUPPORTED_ERRNOS


def describe_os_error(error: OSError) -> str:
    """``"[Errno 18] Invalid cross-device link"`` without the file names repeated."""
    if error.errno is None:
        return str(error)
    return f"[Errno {error.errno}] {error.strerror or os.strerror(error.errno)}"
