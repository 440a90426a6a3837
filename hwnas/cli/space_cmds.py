"""The ``space`` sub-app: sample and describe the search space."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from .common import _emit_json, out, parse_arch, space_app


@space_app.command("sample")
def space_sample(n: int = typer.Option(10, "--n", min=1, help="how many architectures"),
                 seed: int = typer.Option(0, "--seed", help="random seed"),
                 space_name: str = typer.Option("mbv3", "--space", help="search space: mbv3 (default) | vit")) -> None:
    """Print N seeded, distinct architectures of the space, one string per line."""
    from ..space import DEFAULT_SPACE
    from ..spaces import check_space_name

    if check_space_name(space_name) == "vit":
        from .vit_cmds import vit_space_sample

        vit_space_sample(n, seed)
        return

    for a in DEFAULT_SPACE.sample_many(n, seed=seed):
        sys.stdout.write(f"{a}\n")


@space_app.command("info")
def space_info(arch: Optional[List[str]] = typer.Argument(None, help="architecture strings"),
               json_out: bool = typer.Option(False, "--json"),
               space_name: str = typer.Option("mbv3", "--space", help="search space: mbv3 (default) | vit")) -> None:
    """The space's choices and size, or MACs and params of given architectures."""
    from ..cost import arch_cost
    from ..space import DEFAULT_SPACE
    from .vit_cmds import check_targets_space

    check_targets_space(list(arch or []), space_name)
    if space_name == "vit":
        from .vit_cmds import vit_space_info

        vit_space_info(arch, json_out)
        return

    if not arch:
        d = DEFAULT_SPACE.to_dict() | {"size": DEFAULT_SPACE.size}
        _emit_json(d) if json_out else out.print(d)
        return
    rows = []
    for s in arch:
        c = arch_cost(parse_arch(s))
        rows.append({"arch": s, "macs": c.macs, "params": c.params})
    if json_out:
        _emit_json(rows)
    else:
        for r in rows:
            out.print(f"{r['arch']}  macs={r['macs'] / 1e6:.1f}M  params={r['params'] / 1e6:.2f}M")
