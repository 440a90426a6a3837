"""Durable storage of a device profile: one SQLite file in WAL mode (``DIR/profile.sqlite``).

Every measurement is committed in its own transaction, so ``kill -9`` at any moment loses at
most the measurement in flight; primary keys make duplicates impossible, so ``--resume``
can never double a row.  Values in ``meta`` and ``extra`` columns are JSON (no pickle).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ProfileError
from ..measure import KernelProfile, Measurement

SCHEMA_VERSION = 1
DB_NAME = "profile.sqlite"

#: columns that are latencies (ms, or canary units) and must be positive and finite in every row
_POSITIVE = {
    "measurements": ("latency_ms", "latency_p10_ms", "latency_p90_ms", "relative_to_canary", "canary_ms"),
    "kernel_profiles": ("e2e_ms", "canary_ms"),
}
#: spreads and profiler times (ORT's profiler counts whole µs: a tiny kernel, even a tiny model's
#: kernel sum, can be 0): non-negative, finite
_NON_NEGATIVE = {"measurements": ("latency_iqr_ms", "noise_rel"), "kernel_records": ("duration_ms",),
                 "kernel_profiles": ("kernel_sum_ms", "kernel_sum_ratio")}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    kind TEXT NOT NULL,              -- block | kernel | arch
    key TEXT NOT NULL,               -- block key, kernel key, architecture string
    target TEXT NOT NULL,            -- JSON description of what was measured
    latency_ms REAL NOT NULL,        -- median of all timed runs (absolute)
    latency_p10_ms REAL NOT NULL,
    latency_p90_ms REAL NOT NULL,
    latency_iqr_ms REAL NOT NULL,
    runs INTEGER NOT NULL,
    relative_to_canary REAL NOT NULL,
    canary_ms REAL NOT NULL,         -- geometric mean of the bracketing canary rounds
    noise_rel REAL NOT NULL,         -- (max - min) / median of per-round ratios
    canary_drift REAL NOT NULL,
    macs INTEGER,
    params INTEGER,
    measured_at REAL NOT NULL,       -- unix time, seconds
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS kernel_profiles (
    arch TEXT PRIMARY KEY,
    kernel_sum_ms REAL NOT NULL,
    e2e_ms REAL NOT NULL,
    kernel_sum_ratio REAL NOT NULL,
    profiled_runs INTEGER NOT NULL,
    canary_ms REAL NOT NULL,         -- canary timed right before and after (geometric mean)
    measured_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kernel_records (
    arch TEXT NOT NULL,
    node_index INTEGER NOT NULL,
    node_name TEXT NOT NULL,
    op_type TEXT NOT NULL,
    domain TEXT NOT NULL,
    input_shapes TEXT NOT NULL,      -- JSON list of shapes
    output_shapes TEXT NOT NULL,
    attributes TEXT NOT NULL,        -- JSON object, from the saved optimized graph
    duration_ms REAL NOT NULL,
    PRIMARY KEY (arch, node_name)
);
"""


def _not_a_profile(path: Path) -> str | None:
    """Why the existing SQLite file ``path`` is not an hwnas profile, read without changing a
    byte (None: it is one, or there is nothing there yet: no file, or no tables)."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return None
            if "meta" not in tables:
                return f"an SQLite database without a meta table; it holds {', '.join(sorted(tables))}"
            if conn.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone() is None and any(
                    conn.execute('SELECT 1 FROM "%s" LIMIT 1' % t.replace('"', '""')).fetchone() for t in tables):
                # (all empty: a profile killed while its tables were being made, which may be redone)
                return "its meta table has no schema_version"
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None  # not readable as SQLite: opening it below says so (and writes nothing to it)
    return None


class ProfileStore:
    """Read/write access to ``DIR/profile.sqlite``."""

    def __init__(self, directory: str | Path, *, create: bool = False, readonly: bool = False) -> None:
        self.dir = Path(directory)
        self.path = self.dir / DB_NAME
        if create:
            if self.dir.exists() and not self.dir.is_dir():
                raise ProfileError(f"output path {self.dir} is a file, not a directory")
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ProfileError(f"cannot create profile directory {self.dir}: {e.strerror}") from None
            why = _not_a_profile(self.path)
            if why:
                raise ProfileError(f"{self.path} is not an hwnas profile ({why}); it is left as it is: choose another --out")
        elif not self.path.is_file():
            if self.dir.is_file():
                raise ProfileError(f"profile path {self.dir} is a file; a profile is a directory holding {DB_NAME}")
            raise ProfileError(f"no device profile at {self.dir} (expected {self.path})")
        try:
            if readonly:
                self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            else:
                self.conn = sqlite3.connect(self.path, timeout=30)
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(_SCHEMA)
            self.conn.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.DatabaseError as e:
            raise ProfileError(f"profile database {self.path} is unreadable or corrupt ({e})") from None
        if not create:
            version = self.get_meta("schema_version")
            if version is None:
                raise ProfileError(f"profile database {self.path} has no schema version; not an hwnas profile")
            if int(version) > SCHEMA_VERSION:
                raise ProfileError(
                    f"profile {self.dir} has schema version {version}; this hwnas reads up to {SCHEMA_VERSION}: upgrade hwnas"
                )
        else:
            if self.get_meta("schema_version") is None:
                self.set_meta("schema_version", SCHEMA_VERSION)

    def close(self, compact: bool = False) -> None:
        """Close; with ``compact`` fold the WAL into the main file (a single self-contained file)."""
        if compact:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.conn.execute("PRAGMA journal_mode=DELETE")
        self.conn.close()

    def __enter__(self) -> "ProfileStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- meta -------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    # -- measurements -----------------------------------------------------------------------
    def done_keys(self, kind: str) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT key FROM measurements WHERE kind = ?", (kind,))}

    def done_kernel_profiles(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT arch FROM kernel_profiles")}

    def add_measurement(self, kind: str, key: str, target: dict, m: Measurement,
                        macs: int | None = None, params: int | None = None,
                        kernel_profile: KernelProfile | None = None) -> None:
        """One measurement (and optionally its kernel profile), in one transaction."""
        with self.conn:
            if kernel_profile is not None:
                self._insert_kernel_profile(key, kernel_profile)
            self._insert_measurement(kind, key, target, m, macs, params)

    def _insert_measurement(self, kind: str, key: str, target: dict, m: Measurement,
                            macs: int | None, params: int | None) -> None:
        """Caller holds the transaction."""
        s = m.stats
        self.conn.execute(
            "INSERT INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (kind, key, json.dumps(target), s.median_ms, s.p10_ms, s.p90_ms, s.iqr_ms, s.count,
             m.relative_to_canary, m.canary_ms, m.noise_rel, m.canary_drift, macs, params, time.time()),
        )

    def replace_measurement(self, kind: str, key: str, target: dict, m: Measurement,
                            macs: int | None = None, params: int | None = None,
                            kernel_profile: KernelProfile | None = None) -> None:
        """A fresh measurement of something measured before (a quieter second pass): the old row,
        and its kernel profile when a new one is given, go in the same transaction as the new
        ones are written, so a crash leaves either the old or the new."""
        with self.conn:
            n = self.conn.execute("DELETE FROM measurements WHERE kind = ? AND key = ?", (kind, key)).rowcount
            if n == 0:
                raise KeyError(f"no {kind} measurement {key!r} to replace")
            if kernel_profile is not None:
                self.conn.execute("DELETE FROM kernel_records WHERE arch = ?", (key,))
                self.conn.execute("DELETE FROM kernel_profiles WHERE arch = ?", (key,))
                self._insert_kernel_profile(key, kernel_profile)
            self._insert_measurement(kind, key, target, m, macs, params)

    def add_kernel_profile(self, arch: str, kp: KernelProfile) -> None:
        """All kernel records of one model and its summary, in one transaction."""
        with self.conn:
            self._insert_kernel_profile(arch, kp)

    def _insert_kernel_profile(self, arch: str, kp: KernelProfile) -> None:
        """Caller holds the transaction."""
        self.conn.executemany(
            "INSERT INTO kernel_records VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (arch, r.node_index, r.node_name, r.op_type, r.domain,
                 json.dumps([list(x) for x in r.input_shapes]), json.dumps([list(x) for x in r.output_shapes]),
                 json.dumps(r.attributes), r.duration_ms)
                for r in kp.records
            ],
        )
        self.conn.execute(
            "INSERT INTO kernel_profiles VALUES (?,?,?,?,?,?,?)",
            (arch, kp.kernel_sum_ms, kp.e2e_ms, kp.kernel_sum_ratio, kp.profiled_runs, kp.canary_ms, time.time()),
        )

    # -- tables -----------------------------------------------------------------------------
    def measurements(self, kind: str | None = None) -> pd.DataFrame:
        q = "SELECT * FROM measurements" + (" WHERE kind = ?" if kind else "") + " ORDER BY measured_at"
        df = pd.read_sql_query(q, self.conn, params=(kind,) if kind else None)
        self._check_values(df, "measurements", lambda r: f"{r['kind']} {r['key']!r}")
        df["target"] = df["target"].map(json.loads)
        return df

    def kernel_profiles(self) -> pd.DataFrame:
        df = pd.read_sql_query("SELECT * FROM kernel_profiles ORDER BY measured_at", self.conn)
        self._check_values(df, "kernel_profiles", lambda r: repr(r["arch"]))
        return df

    def kernel_records(self) -> pd.DataFrame:
        df = pd.read_sql_query("SELECT * FROM kernel_records ORDER BY arch, node_index", self.conn)
        self._check_values(df, "kernel_records", lambda r: f"{r['arch']!r} node {r['node_name']!r}")
        for c in ("input_shapes", "output_shapes", "attributes"):
            df[c] = df[c].map(json.loads)
        return df

    def _check_values(self, df: pd.DataFrame, table: str, row_name) -> None:
        """ProfileError naming the first row of ``table`` whose latency is not a positive (or, for
        spreads and per-kernel times, non-negative), finite number: a tampered or corrupt profile
        is never trained on or predicted from."""
        for cols, lo_ok in ((_POSITIVE.get(table, ()), False), (_NON_NEGATIVE.get(table, ()), True)):
            for c in cols:
                v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
                bad = ~(np.isfinite(v) & ((v >= 0) if lo_ok else (v > 0)))
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    val = df[c].iloc[i]
                    val = val.item() if isinstance(val, np.generic) else val
                    raise ProfileError(
                        f"profile {self.path}: {table} row of {row_name(df.iloc[i])} has {c} = {val!r}; "
                        f"it must be a {'non-negative' if lo_ok else 'positive'}, finite number (tampered or corrupt profile)"
                    )

    def counts(self) -> dict[str, int]:
        out = {k: n for k, n in self.conn.execute("SELECT kind, count(*) FROM measurements GROUP BY kind")}
        out["kernel_profile"] = self.conn.execute("SELECT count(*) FROM kernel_profiles").fetchone()[0]
        return out

    def row_counts(self) -> dict[str, int]:
        return {t: self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("measurements", "kernel_profiles", "kernel_records")}

