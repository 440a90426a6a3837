"""A fleet directory on the head: ``fleet.json`` plus one profile directory per node and device.

::

    DIR/fleet.json                        format, hwnas version, the profiles and who measured them
    DIR/<device>-<machine>/               a node's profile of one device (a normal profile directory)
    DIR/<device>-<class>/                 sharded: the merged profile of one device ...
    DIR/shards/<device>-<machine>/        ... and each node's share of it

``<machine>`` hashes the node's machine fingerprint (CPU model, cores, ISA flags, ORT version)
with its host name and machine id: one physical machine.  ``<class>`` hashes the fingerprint
alone: machines of the same kind, whose canary units are interchangeable.  Nothing here needs
Ray: ``hwnas fleet status`` and ``hwnas search --profile DIR`` read fleet directories without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from ..errors import ProfileError
from ..fingerprint import COMPARABLE_KEYS

FLEET_FILE = "fleet.json"
FORMAT = "hwnas-fleet"
FORMAT_VERSION = 1
SHARDS = "shards"

#: per-measurement timing on the node, kept in each profile's SQLite file next to the measurement
#: (written in the measurement's own transaction)
LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_log (
    kind TEXT NOT NULL,        -- the part (block, kernel, kernel_profile, zoo, arch)
    key TEXT NOT NULL,
    node TEXT NOT NULL,        -- the node's machine key (and tag)
    started_at REAL NOT NULL,  -- unix time on the node, seconds
    ended_at REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
"""


def _hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def class_key(fp: dict) -> str:
    """Machines of one kind: the fingerprint fields that make latencies comparable."""
    return _hash({k: fp.get(k) for k in COMPARABLE_KEYS})


def machine_key(fp: dict, host: str, machine_id: str) -> str:
    """One physical machine: its kind plus its host name and machine id."""
    return _hash({"class": class_key(fp), "host": host, "machine_id": machine_id})


def read_fleet(directory: Path) -> dict | None:
    """``fleet.json`` of ``directory`` (None when there is none); a clear error when it is not
    this version's format."""
    path = Path(directory) / FLEET_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ProfileError(f"fleet directory {directory}: {FLEET_FILE} is unreadable ({e.__class__.__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f"fleet directory {directory}: {FLEET_FILE} is not an hwnas fleet file")
    if data.get("format_version") != FORMAT_VERSION:
        raise ProfileError(f"fleet directory {directory} was written by hwnas {data.get('hwnas_version', '?')} "
                           f"(fleet format {data.get('format_version')}); this hwnas reads format {FORMAT_VERSION}: "
                           f"use that hwnas or another --out (nothing was changed)")
    return data


def check_out_dir(directory: Path) -> dict | None:
    """``directory`` may hold a fleet: absent, empty, or a fleet of this format.  Returns its
    ``fleet.json`` (None if new); raises before anything is written."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ProfileError(f"output path {d} is a file, not a directory")
    data = read_fleet(d)
    if data is None and d.is_dir() and any(d.iterdir()):
        raise ProfileError(f"{d} is not empty and holds no {FLEET_FILE}; choose an empty or new --out")
    return data


def write_fleet(directory: Path, data: dict) -> None:
    """Write ``fleet.json`` atomically (a temporary file renamed over it)."""
    import hwnas

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    data = dict(data, format=FORMAT, format_version=FORMAT_VERSION, hwnas_version=hwnas.__version__,
                updated_at=time.time())
    tmp = d / f".{FLEET_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, d / FLEET_FILE)


def fleet_profiles(directory: Path) -> list[Path] | None:
    """The profiles of a fleet directory, in name order (None when ``directory`` is no fleet):
    each node's profile, or each device's merged profile when sharded."""
    data = read_fleet(directory)
    if data is None:
        return None
    return [Path(directory) / name for name in sorted(data.get("profiles", {}))]


def _store_progress(db: Path) -> dict:
    """Rows measured in one profile file and the last measurement's time (read-only)."""
    if not db.is_file():
        return {"done": 0, "last_at": None, "status": "not started"}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
        try:  # one log row per task measured through the fleet
            n, last = con.execute("SELECT count(*), max(ended_at) FROM fleet_log").fetchone()
        except sqlite3.OperationalError:
            n, last = 0, None
        return {"done": int(n), "last_at": last, "status": json.loads(row[0]) if row else "unknown"}
    finally:
        con.close()


def status_rows(directory: Path) -> list[dict]:
    """Progress of every profile and shard of a fleet directory, for ``hwnas fleet status``."""
    data = read_fleet(directory)
    if data is None:
        raise ProfileError(f"no fleet at {directory} (no {FLEET_FILE}; make one with `hwnas fleet profile`)")
    rows = []
    for name, info in sorted(data.get("profiles", {}).items()) + sorted(data.get("shards", {}).items()):
        sub = (Path(directory) / SHARDS / name) if name in data.get("shards", {}) else Path(directory) / name
        prog = _store_progress(sub / "profile.sqlite")
        rows.append({"profile": str(sub.relative_to(directory)), "device": info.get("device"),
                     "node": info.get("host", ""), "role": info.get("role", "node"),
                     "planned": info.get("planned"), **prog})
    return rows
