"""Seeds sharded over several devices give the results of one device (CPU devices forced with
``--xla_force_host_platform_device_count=4``)."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

TINY = ["cell.hidden_size=8", "task.length=2", "task.copy_length=3", "train.steps=4",
        "train.log_every=2", "train.num_seeds=4", "train.batch_size=4",
        "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
        "logger.progress=false", "logger.wandb.mode=disabled", "logger.plots=false"]


def _run(tmp_path, name, *extra):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-m", "rnnlab.run", *TINY, *extra,
                           f"hydra.run.dir={tmp_path / name}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc


def test_seeds_sharded_over_four_devices_match_one_device(tmp_path):
    one = _run(tmp_path, "one", "train.devices=1")
    four = _run(tmp_path, "four")  # default: as many devices as divide 4 seeds
    assert one.returncode == 0 and four.returncode == 0, (one.stderr, four.stderr)
    a = pd.read_json(tmp_path / "one" / "metrics.jsonl", lines=True)
    b = pd.read_json(tmp_path / "four" / "metrics.jsonl", lines=True)
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)
    sa = json.loads((tmp_path / "one" / "summary.json").read_text())
    sb = json.loads((tmp_path / "four" / "summary.json").read_text())
    assert (sa["devices"], sb["devices"]) == (1, 4)
    for metric, stats in sa["final"].items():
        assert sb["final"][metric]["mean"] == pytest.approx(stats["mean"], rel=1e-5)
    # seeds that do not divide over the devices are refused by name
    bad = _run(tmp_path, "bad", "train.devices=3")
    assert bad.returncode == 2 and "train.num_seeds=4 cannot be split evenly over " \
                                   "train.devices=3" in bad.stderr
    assert not (tmp_path / "bad").exists()
