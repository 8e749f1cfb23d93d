"""Hydra entry point.

    python -m rnnlab.run cell=peephole
    python -m rnnlab.run -m cell=lstm,peephole,gru,rnn task=copy
    python -m rnnlab.run -m +experiment=memory_horizon_cpu

Each job trains all ``train.num_seeds`` seeds of its config in one compiled program and writes
its run folder (Hydra's output folder; see :mod:`rnnlab.logging`). In a sweep (``-m``) a job
that fails records its error in its run folder and the sweep goes on; a single run that fails
exits with the error.
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rnnlab.config import config_dir, register_configs
from rnnlab.loop import execute, summary_line

register_configs()


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    try:
        summary = execute(cfg, run_dir)
    except Exception as err:
        if hc.mode != RunMode.MULTIRUN:
            raise
        print(f"[rnnlab] job {hc.job.num} ({hc.job.override_dirname}) FAILED: "
              f"{type(err).__name__}: {err}\n[rnnlab] its run folder keeps what was logged: "
              f"{run_dir}", file=sys.stderr)
        return None
    print(summary_line(summary))
    print(f"[rnnlab] run folder: {run_dir}")
    loss = summary["final"].get("loss", {}).get("mean")
    return loss


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
