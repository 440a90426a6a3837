"""The registry of search spaces: ``mbv3`` (the MobileNetV3 / Once-for-All space of
:mod:`hwnas.space`, the default) and ``vit`` (the vision-transformer space of
:mod:`hwnas.spaces.vit`).

What the rest of hwnas calls (no state, no I/O at import):

* :func:`check_space_name` -- a ``--space`` value, or a one-line :class:`~hwnas.errors.InputError`;
* :func:`profile_space_name` -- the space a profile was measured for (its meta's ``space_name``;
  profiles from before the registry are ``mbv3``);
* :func:`check_profile_space` -- that a profile is of the space a command was asked for;
* :func:`parse_arch_in` -- an architecture string of the named space, with a one-line error that
  says so when the string belongs to the other space.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

SPACE_NAMES = ("mbv3", "vit")
DEFAULT_SPACE_NAME = "mbv3"


def check_space_name(name: str) -> str:
    if name not in SPACE_NAMES:
        raise InputError(f"unknown search space {name!r}: choose one of {', '.join(SPACE_NAMES)}")
    return name


def space_name_of_meta(meta: dict) -> str:
    """The space of a profile's meta (``mbv3`` for profiles made before spaces had names)."""
    return str(meta.get("space_name", DEFAULT_SPACE_NAME))


def profile_space_name(directory: str | Path) -> str:
    from ..profile.store import ProfileStore

    store = ProfileStore(directory, readonly=True)
    try:
        return space_name_of_meta(store.meta())
    finally:
        store.close()


def check_profile_space(directory: str | Path, space: str) -> None:
    """A one-line InputError when the profile at ``directory`` is of another space than ``space``."""
    got = profile_space_name(directory)
    if got != space:
        raise InputError(f"profile {directory} is a profile of the {got!r} search space, not {space!r}: "
                         f"pass --space {got} or a profile of the {space!r} space")


def guess_space(text: str) -> str:
    """Which space an architecture string looks like it belongs to."""
    return "vit" if text.strip().startswith("vit") else DEFAULT_SPACE_NAME


def default_space(name: str):
    """The default space object of ``name``: a fresh one (the vit space owns a seeded generator)."""
    check_space_name(name)
    if name == "vit":
        from .vit import VitSpace

        return VitSpace()
    from ..space import DEFAULT_SPACE

    return DEFAULT_SPACE


def parse_arch_in(text: str, space: str, space_obj=None):
    """``text`` parsed as an architecture of ``space`` (validated against ``space_obj`` or the default
    space), or a one-line InputError; a string of the other space says which ``--space`` it needs."""
    check_space_name(space)
    other = guess_space(text) if isinstance(text, str) else space
    if other != space:
        raise InputError(f"{text!r} is an architecture of the {other!r} search space, not {space!r}: "
                         f"pass --space {other}")
    sp = space_obj if space_obj is not None else default_space(space)
    try:
        return sp.parse(text)
    except ValueError as e:
        raise InputError(str(e)) from None


__all__ = ["SPACE_NAMES", "DEFAULT_SPACE_NAME", "check_space_name", "space_name_of_meta", "profile_space_name",
           "check_profile_space", "guess_space", "default_space", "parse_arch_in"]
