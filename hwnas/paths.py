"""Where the bundled data lives: ``devices/`` and ``profiles/`` at the repository root.

hwnas is installed from its source tree (``pip install -e .``); these folders sit beside the
package.  ``HWNAS_HOME`` overrides the root.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    env = os.environ.get("HWNAS_HOME")
    return Path(env) if env else Path(__file__).resolve().parent.parent


def devices_dir() -> Path:
    return project_root() / "devices"


def profiles_dir() -> Path:
    return project_root() / "profiles"


DEFAULT_PROFILE_NAME = "cpu-1t"


def default_profile_dir() -> Path:
    """The bundled reference profile (``profiles/cpu-1t``)."""
    return profiles_dir() / DEFAULT_PROFILE_NAME
