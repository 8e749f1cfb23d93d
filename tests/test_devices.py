"""Seeds sharded over several devices give the results of one device (four CPU devices, with
``JAX_NUM_CPU_DEVICES=4``), and rnnlab makes one CPU device per core unless told otherwise."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cli_driver import run_command_lines

TINY = ["cell.hidden_size=8", "task.length=2", "task.copy_length=3", "train.steps=4",
        "train.log_every=2", "train.num_seeds=4", "train.batch_size=4",
        "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
        "logger.progress=false", "logger.wandb.mode=disabled", "logger.plots=false"]


def test_seeds_sharded_over_four_devices_match_one_device(tmp_path):
    # one process for the command lines (XLA's device count is fixed when it starts)
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    one, four, bad = run_command_lines(
        [([*TINY, "train.devices=1", f"hydra.run.dir={tmp_path / 'one'}"], tmp_path / "a"),
         # default: 4 seeds, one per device
         ([*TINY, f"hydra.run.dir={tmp_path / 'four'}"], tmp_path / "b"),
         ([*TINY, "train.devices=5", f"hydra.run.dir={tmp_path / 'bad'}"], tmp_path / "c")],
        env={"JAX_NUM_CPU_DEVICES": "4"})
    assert one["code"] == 0 and four["code"] == 0, (one["err"], four["err"])
    a = pd.read_json(tmp_path / "one" / "metrics.jsonl", lines=True)
    b = pd.read_json(tmp_path / "four" / "metrics.jsonl", lines=True)
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)
    sa = json.loads((tmp_path / "one" / "summary.json").read_text())
    sb = json.loads((tmp_path / "four" / "summary.json").read_text())
    assert (sa["devices"], sb["devices"]) == (1, 4)
    assert sa["padding_members"] == sb["padding_members"] == 0
    for metric, stats in sa["final"].items():
        assert sb["final"][metric]["mean"] == pytest.approx(stats["mean"], rel=1e-5)
    # more devices than there are is refused by name
    assert bad["code"] == 2 and "train.devices" in bad["err"] and "got 5" in bad["err"]
    assert not (tmp_path / "bad").exists()


LAYOUTS = {"default": [],  # 5 seeds on 4 devices: 2 + 2 + 2 rows on 3 of them, one a copy
           "devices4": ["train.devices=4"]}  # exactly 4 devices: 2 rows each, three copies
FIVE = [*TINY, "train.num_seeds=5", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def padded_runs(tmp_path_factory):
    """Five seeds on one device and in both padded layouts (one process), then each padded run
    resumed from its checkpoint at step 2 (the folder as a kill after it leaves it)."""
    root = tmp_path_factory.mktemp("padded")
    cases = [([*FIVE, "train.devices=1", f"hydra.run.dir={root / 'one'}"], root / "cwd_one")]
    cases += [([*FIVE, *layout, f"hydra.run.dir={root / name}"], root / f"cwd_{name}")
              for name, layout in LAYOUTS.items()]
    for _, cwd in cases:
        cwd.mkdir()
    env = {"JAX_NUM_CPU_DEVICES": "4"}
    first = run_command_lines(cases, env=env)
    resumed = []
    for name, layout in LAYOUTS.items():
        folder = root / f"resumed_{name}"
        shutil.copytree(root / name, folder, ignore=shutil.ignore_patterns("summary.json"))
        shutil.rmtree(folder / "checkpoints" / "4")
        (root / f"cwd_resumed_{name}").mkdir()
        resumed.append(([*FIVE, *layout, f"hydra.run.dir={folder}"],
                        root / f"cwd_resumed_{name}"))
    again = run_command_lines(resumed, env=env)
    return root, dict(zip(["one", *LAYOUTS], first, strict=True)), dict(
        zip(LAYOUTS, again, strict=True))


@pytest.mark.parametrize(("name", "devices", "padding"),
                         [("default", 3, 1), ("devices4", 4, 3)])
def test_seeds_the_devices_do_not_divide_are_padded_and_resume(padded_runs, name, devices,
                                                              padding):
    """Five seeds on four devices: the rows are padded with copies of seed 0 that are
    computed and thrown away; metrics, gradient curves and summary hold the five seeds, as on
    one device, and a run resumed from a checkpoint midway ends the same."""
    root, first, again = padded_runs
    one, padded = first["one"], first[name]
    assert one["code"] == 0 and padded["code"] == 0, (one["err"], padded["err"])
    a = pd.read_json(root / "one" / "metrics.jsonl", lines=True)
    b = pd.read_json(root / name / "metrics.jsonl", lines=True)
    assert sorted(b["seed"].unique()) == [0, 1, 2, 3, 4]
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)
    sa = json.loads((root / "one" / "summary.json").read_text())
    sb = json.loads((root / name / "summary.json").read_text())
    assert (sb["devices"], sb["padding_members"]) == (devices, padding)
    assert sorted(sb["per_seed"]) == ["0", "1", "2", "3", "4"]
    for seed, metrics in sa["per_seed"].items():
        for k, v in metrics.items():
            assert sb["per_seed"][seed][k] == pytest.approx(v, rel=1e-5), (seed, k)
    with np.load(root / "one" / "gradients.npz") as ga, \
            np.load(root / name / "gradients.npz") as gb:
        assert ga["layer_0/h/mean"].shape == gb["layer_0/h/mean"].shape
        assert gb["layer_0/h/mean"].shape[:2] == (3, 5)  # measurements x seeds
        np.testing.assert_allclose(gb["layer_0/h/mean"], ga["layer_0/h/mean"], rtol=1e-4)
    resumed = root / f"resumed_{name}"
    assert again[name]["code"] == 0, again[name]["err"]
    events = [json.loads(x) for x in (resumed / "events.jsonl").read_text().splitlines()]
    assert {"event": "resumed", "step": 2} in events
    pd.testing.assert_frame_equal(pd.read_json(resumed / "metrics.jsonl", lines=True), b)
    sc = json.loads((resumed / "summary.json").read_text())
    assert sc["per_seed"] == sb["per_seed"]


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
