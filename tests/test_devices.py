"""Seeds sharded over several devices give the results of one device (four CPU devices, with
``JAX_NUM_CPU_DEVICES=4``), and rnnlab makes one CPU device per core unless told otherwise."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from cli_driver import run_command_lines

TINY = ["cell.hidden_size=8", "task.length=2", "task.copy_length=3", "train.steps=4",
        "train.log_every=2", "train.num_seeds=4", "train.batch_size=4",
        "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
        "logger.progress=false", "logger.wandb.mode=disabled", "logger.plots=false"]


def test_seeds_sharded_over_four_devices_match_one_device(tmp_path):
    # one process for the three command lines (XLA's device count is fixed when it starts)
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    one, four, bad = run_command_lines(
        [([*TINY, "train.devices=1", f"hydra.run.dir={tmp_path / 'one'}"], tmp_path / "a"),
         # default: as many devices as divide 4 seeds
         ([*TINY, f"hydra.run.dir={tmp_path / 'four'}"], tmp_path / "b"),
         ([*TINY, "train.devices=3", f"hydra.run.dir={tmp_path / 'bad'}"], tmp_path / "c")],
        env={"JAX_NUM_CPU_DEVICES": "4"})
    assert one["code"] == 0 and four["code"] == 0, (one["err"], four["err"])
    a = pd.read_json(tmp_path / "one" / "metrics.jsonl", lines=True)
    b = pd.read_json(tmp_path / "four" / "metrics.jsonl", lines=True)
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)
    sa = json.loads((tmp_path / "one" / "summary.json").read_text())
    sb = json.loads((tmp_path / "four" / "summary.json").read_text())
    assert (sa["devices"], sb["devices"]) == (1, 4)
    for metric, stats in sa["final"].items():
        assert sb["final"][metric]["mean"] == pytest.approx(stats["mean"], rel=1e-5)
    # seeds that do not divide over the devices are refused by name
    assert bad["code"] == 2 and "train.num_seeds=4 cannot be split evenly over " \
                               "train.devices=3" in bad["err"]
    assert not (tmp_path / "bad").exists()


def _devices_after_import(env: dict[str, str], code: str = "import rnnlab, jax") -> int:
    env = {**{k: v for k, v in os.environ.items()
              if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}, **env}
    out = subprocess.run([sys.executable, "-c", f"{code}; print(len(jax.devices('cpu')))"],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_one_cpu_device_per_core_unless_chosen():
    cores = len(os.sched_getaffinity(0))
    assert _devices_after_import({}) == cores
    assert _devices_after_import({}, "import jax, rnnlab") == cores  # jax first: the same
    # the user's choice stays: the variable, XLA's flag, or a backend already started
    assert _devices_after_import({"JAX_NUM_CPU_DEVICES": "3"}) == 3
    assert _devices_after_import(
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=5"}) == 5
    assert _devices_after_import({}, "import jax; jax.numpy.zeros(1); import rnnlab") == 1
