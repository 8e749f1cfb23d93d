"""How much a repeated sweep gains from JAX's persistent compilation cache.

Runs the same small sweep three times, each a fresh process, side by side in one script:
(1) cache off, (2) cache on and empty, (3) cache on and filled by (2). Prints the wall time of
each and the ratios. Usage::

    python scripts/bench_compile_cache.py [--jobs cell=lstm,gru] [--steps 200]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep(cache: str, overrides: list[str], out: Path) -> float:
    args = [sys.executable, "-m", "rnnlab.run", "-m", *overrides,
            f"train.compilation_cache={cache}", "logger.progress=false",
            "logger.wandb.mode=disabled", "logger.plots=false", "gradients.enabled=false",
            f"hydra.sweep.dir={out}"]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="cell=lstm,gru", help="the sweep's override")
    parser.add_argument("--steps", type=int, default=200)
    a = parser.parse_args()
    overrides = [a.jobs, f"train.steps={a.steps}", "train.log_every=100"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        off = sweep("null", overrides, tmp / "off")
        cold = sweep(str(tmp / "cache"), overrides, tmp / "cold")
        warm = sweep(str(tmp / "cache"), overrides, tmp / "warm")
    print(f"sweep {a.jobs}, {a.steps} steps: cache off {off:.1f} s | cache on, empty "
          f"{cold:.1f} s ({cold / off:.2f}x) | cache on, filled {warm:.1f} s "
          f"({warm / off:.2f}x of off)")


if __name__ == "__main__":
    main()
