"""The public surface: what ``asynclink`` exports is what ``__all__`` says."""

from __future__ import annotations

import asynclink


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(asynclink) if not name.startswith("_")}
    assert set(asynclink.__all__) == public


def test_every_error_shares_one_root() -> None:
    errors = [
        getattr(asynclink, name)
        for name in asynclink.__all__
        if isinstance(getattr(asynclink, name), type)
        and issubclass(getattr(asynclink, name), Exception)
        and not issubclass(getattr(asynclink, name), Warning)
    ]
    assert errors
    assert all(issubclass(error, asynclink.AsyncLinkError) for error in errors)
