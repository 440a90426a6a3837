"""``hwnas fleet``: profile many machines at once on a Ray cluster (needs ``pip install 'hwnas[ray]'``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import HwnasError, InputError

fleet_app = typer.Typer(no_args_is_help=True, help="Profile a fleet of machines on a Ray cluster "
                        "(pip install 'hwnas\\[ray]'; `ray start --head`, then on each machine "
                        "`ray start --address HEAD:6379 --resources '{\"hwnas\": 1}'`).")
err = Console(stderr=True)
out = Console()


@fleet_app.command("profile")
def fleet_profile(address: str = typer.Option(..., "--address", help="the cluster's HOST:PORT (from `ray start --head`)"),
                  device: List[str] = typer.Option(..., "--device", help="device name or .toml path (repeatable)"),
                  out_dir: Path = typer.Option(..., "--out", help="fleet directory on the head"),
                  quick: Optional[int] = typer.Option(None, "--quick", help="few-shot: N architectures per profile "
                                                      "(needs --from-profile)"),
                  from_profile: Optional[Path] = typer.Option(None, "--from-profile",
                                                              help="few-shot: adapt this trained reference profile"),
                  shard: bool = typer.Option(False, "--shard", help="split each device's campaign across the nodes "
                                             "(machines of one kind) and merge it into one profile"),
                  resource: str = typer.Option("hwnas", "--resource", help="custom resource marking measuring nodes"),
                  share_machine: bool = typer.Option(False, "--share-machine", help="allow several measuring nodes on "
                                                     "one machine (test clusters; the machine lock serializes them)"),
                  n_archs: int = typer.Option(400, "--n-archs", min=0),
                  n_kernels: int = typer.Option(400, "--n-kernels", min=0),
                  n_token_kernels: int = typer.Option(150, "--n-token-kernels", min=0),
                  n_lrn_kernels: int = typer.Option(24, "--n-lrn-kernels", min=0),
                  n_patch_kernels: int = typer.Option(32, "--n-patch-kernels", min=0),
                  n_fc_kernels: int = typer.Option(12, "--n-fc-kernels", min=0),
                  n_attention_kernels: int = typer.Option(40, "--n-attention-kernels", min=0),
                  n_fused_act_kernels: int = typer.Option(60, "--n-fused-act-kernels", min=0),
                  n_kernel_profiles: int = typer.Option(30, "--n-kernel-profiles", min=0),
                  zoo_per_family: int = typer.Option(6, "--zoo-per-family", min=0),
                  seed: int = typer.Option(0, "--seed"),
                  resolutions: Optional[str] = typer.Option(None, "--resolutions", help="comma-separated"),
                  width_mults: Optional[str] = typer.Option(None, "--width-mults", help="comma-separated"),
                  short_timing: bool = typer.Option(False, "--short-timing", help="shorter timing (noisier)"),
                  train: bool = typer.Option(True, "--train/--no-train", help="train each finished full profile")) -> None:
    """Profile DEVICE on every measuring node (one measurement at a time per node), streamed into
    DIR/<device>-<machine>/ on the head; rerun the same command to resume."""
    from ..cli.common import _space_from_options
    from ..devices import load_device
    from ..measure import MeasureConfig
    from ..profile import ProfilePlan
    from .run import FleetConfig, profile_fleet

    devs = tuple(load_device(d) for d in device)
    if len({d.name for d in devs}) < len(devs):
        raise InputError("--device: the same device is given twice")
    if quick is not None and from_profile is None:
        raise InputError("--quick N makes few-shot profiles and needs --from-profile REF (a trained profile)")
    cfg = FleetConfig(address, devs, out_dir,
                      ProfilePlan(n_archs=n_archs, n_kernels=n_kernels, n_token_kernels=n_token_kernels,
                                  n_lrn_kernels=n_lrn_kernels, n_patch_kernels=n_patch_kernels,
                                  n_fc_kernels=n_fc_kernels, n_attention_kernels=n_attention_kernels,
                                  n_fused_act_kernels=n_fused_act_kernels,
                                  n_kernel_profiles=n_kernel_profiles,
                                  zoo_per_family=zoo_per_family, seed=seed),
                      _space_from_options(resolutions, width_mults), quick=quick, from_profile=from_profile,
                      shard=shard, share_machine=share_machine, resource=resource,
                      config=MeasureConfig.quick() if short_timing else None, train=train)
    t0 = time.perf_counter()
    rep = profile_fleet(cfg, log=lambda m: err.print(m, highlight=False, soft_wrap=True))
    for n in rep.nodes:
        err.print(f"node {n['node']} on {n['host']}: {n['measured_now']} measured now"
                  + (f"  [{n['dead']}]" if n["dead"] else ""), highlight=False, soft_wrap=True)
    for rel, r in rep.profiles.items():
        err.print(f"{rel}: {r['measured']}/{r['planned']} measured", highlight=False)
    err.print(f"fleet written to {out_dir} in {time.perf_counter() - t0:.1f} s")
    if rep.failed:
        raise HwnasError(f"{len(rep.failed)} node(s) stopped: {rep.failed[0]}")


@fleet_app.command("status")
def fleet_status(out_dir: Path = typer.Option(..., "--out", help="fleet directory"),
                 json_out: bool = typer.Option(False, "--json")) -> None:
    """Progress per node and device of a fleet directory (works without Ray)."""
    from .layout import status_rows

    rows = status_rows(out_dir)
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    t = Table("profile", "device", "node host", "role", "measured", "status", "last measurement")
    for r in rows:
        last = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["last_at"])) if r["last_at"] else ""
        planned = f"/{r['planned']}" if r["planned"] is not None else ""
        t.add_row(r["profile"], r["device"] or "", r["node"], r["role"], f"{r['done']}{planned}", r["status"], last)
    out.print(t)
