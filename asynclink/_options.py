"""How a verb was asked to work: its keywords, checked once, as one frozen value.

:func:`asynclink.install_wheels`, :func:`asynclink.link_wheels`, :func:`asynclink.unpack_wheels`
and :func:`asynclink.plan_install` keep their keyword arguments (the public contract); each
turns them into one :class:`Options`, which is what the engine passes on. The defaults that
measurements chose live here, with the measurements.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import NamedTuple

from ._cache import DEFAULT_MAX_UNPACKED_SIZE
from ._events import EventCallback
from ._fsutil import canonical_name
from ._helpers import HELPER_PROCESSES
from ._modes import LinkMode, default_link_mode

__all__ = ["FILESYSTEM_THREADS", "Options", "default_jobs"]

#: Worker threads for the filesystem batches (directories, links, copies, writes), by default.
#: One: these batches are thousands of short syscalls, each releasing and retaking the GIL, and
#: two threads doing that take turns with the GIL at every call. The benchmark's ``bounds`` rows
#: measure it (README, Performance; 2 cores, tmpfs, no helper processes): link-only hardlink
#: took 67 ms with one thread and 76 ms with two, copy 255 ms and 329 ms. Wheel tasks still
#: overlap: one is unpacked while another is linked, and helper processes give the bulk of the
#: files a core of their own. More threads pay only where each syscall waits long (a network
#: mount); the directory locks keep copies right with any number.
FILESYSTEM_THREADS = 1


def default_jobs() -> int:
    """How many wheels are in flight at once unless the caller says otherwise."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


class Options(NamedTuple):
    """Every keyword of the verbs; see :func:`asynclink.install_wheels` for each."""

    mode: LinkMode
    """The link mode to try first (after any fallback, a wheel's own may differ)."""
    mode_chosen: bool
    """The caller named the mode (a fallback is then worth a warning, not only a log line)."""
    jobs: int
    filesystem_threads: int = FILESYSTEM_THREADS
    helper_processes: int = HELPER_PROCESSES
    lock_timeout: float | None = None
    check_conflicts: bool = True
    on_event: EventCallback | None = None
    cache_dir: str | None = None
    compile: bool = False
    requested: bool | frozenset[str] = True
    """``True``: every wheel was asked for; else the canonical names of those that were."""
    direct_urls: Mapping[str, Mapping[str, object]] = MappingProxyType({})
    installer: str = "asynclink"
    check_tags: bool = True
    break_system_packages: bool = False
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE
    reinstall: bool = False
    """Install even a wheel that is already installed (the same version, from the same wheel)."""

    @classmethod
    def make(
        cls,
        *,
        mode: LinkMode | str | None = None,
        jobs: int | None = None,
        filesystem_threads: int = FILESYSTEM_THREADS,
        helper_processes: int = HELPER_PROCESSES,
        cache_dir: str | os.PathLike[str] | None = None,
        requested: bool | Collection[str] = True,
        direct_urls: Mapping[str, Mapping[str, object]] | None = None,
        **rest: object,
    ) -> Options:
        """The options of one call, checked: a bad value raises ``ValueError`` at once."""
        jobs = jobs if jobs is not None else default_jobs()
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        if filesystem_threads < 1:
            raise ValueError(f"filesystem_threads must be at least 1, not {filesystem_threads}")
        if helper_processes < 0:
            raise ValueError(f"helper_processes cannot be negative: {helper_processes}")
        if not isinstance(requested, bool):
            requested = frozenset(canonical_name(name) for name in requested)
        return cls(
            mode=LinkMode.parse(mode) if mode is not None else default_link_mode(),
            mode_chosen=mode is not None,
            jobs=jobs,
            filesystem_threads=filesystem_threads,
            helper_processes=helper_processes,
            cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
            requested=requested,
            direct_urls=direct_urls or {},
            **rest,  # type: ignore[arg-type]
        )

    def is_requested(self, name: str) -> bool:
        if isinstance(self.requested, bool):
            return self.requested
        return canonical_name(name) in self.requested
