"""Profiling a fleet of machines on Ray (the optional extra ``pip install 'hwnas[ray]'``).

``hwnas fleet profile`` runs one measuring actor per node of a Ray cluster
(:mod:`hwnas.fleet.run`, actor code in :mod:`hwnas.fleet.node`) and streams every measurement
into per-node profiles on the head (:mod:`hwnas.fleet.layout`); sharded campaigns are merged
by :mod:`hwnas.fleet.merge`.  Importing this package does not import Ray.
"""

from __future__ import annotations

from ..errors import InputError

INSTALL_HINT = "hwnas fleet needs Ray: pip install 'hwnas[ray]' (or pip install ray) on the head and every node"


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return ray
