"""Time to generate one architecture's weights with a trained hypernetwork (issue 19: under 1 s).

    python benchmarks/hypernet_speed.py DIR [--n 20]

DIR: a ``hwnas hypernet train`` output.  One torch thread, the first generation (warm-up) not
counted; prints and saves ``benchmarks/results/hypernet_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    import torch

    from hwnas.accuracy.hypernet.evaluation import load_hypernet
    from hwnas.space import DEFAULT_SPACE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--out", default=str(HERE / "results" / "hypernet_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    net = load_hypernet(args.dir).net.eval()
    archs = DEFAULT_SPACE.sample_many(args.n + 1, seed=5)
    ts = []
    with torch.no_grad():
        net.generated_weights(archs[0])
        for a in archs[1:]:
            t = time.perf_counter()
            w = net.generated_weights(a)
            ts.append(time.perf_counter() - t)
    res = {"n": args.n, "threads": 1, "median_ms": 1000 * float(np.median(ts)), "max_ms": 1000 * float(max(ts)),
           "values_last_arch": int(sum(v.numel() for v in w.values()))}
    print(f"weights for one architecture ({args.n} archs, 1 thread): median {res['median_ms']:.1f} ms, "
          f"max {res['max_ms']:.1f} ms")
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
