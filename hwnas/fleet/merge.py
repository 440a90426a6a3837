"""Merging the shards of one device's campaign into one profile, in canary units.

Every shard was measured against the same canary on a machine of the same kind; each row keeps
its ``relative_to_canary`` and the canary it was bracketed by, so the merged profile's drift
correction (``relative_to_canary`` x the median canary of all rows) treats the machines as one.
The merged profile is rebuilt whole in a temporary directory and renamed into place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..profile.store import ProfileStore
from .layout import LOG_SCHEMA

TABLES = ("measurements", "kernel_profiles", "kernel_records", "fleet_log")


def merge_shards(shards: list[Path], out_dir: Path, meta: dict) -> dict[str, int]:
    """Write ``out_dir`` (replaced if it exists) holding every row of ``shards`` and ``meta``;
    returns its row counts.  Shards never share a task, so no row can collide."""
    out_dir = Path(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.merging"
    if tmp.exists():
        shutil.rmtree(tmp)
    store = ProfileStore(tmp, create=True)
    try:
        store.conn.executescript(LOG_SCHEMA)
        for k, v in meta.items():
            store.set_meta(k, v)
        for shard in shards:
            store.conn.execute("ATTACH DATABASE ? AS s", (str(shard / "profile.sqlite"),))
            with store.conn:
                for t in TABLES:
                    store.conn.execute(f"INSERT INTO {t} SELECT * FROM s.{t}")
            store.conn.execute("DETACH DATABASE s")
        counts = store.row_counts()
    finally:
        store.close(compact=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return counts
