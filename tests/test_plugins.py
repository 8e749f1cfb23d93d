"""Cells and tasks from outside rnnlab: entry points of an installed package, RNNLAB_PLUGINS
modules, and class paths as names; their schemas reject misspelt options at compose time."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from rnnlab.cells import CELLS, SimpleRNN
from rnnlab.cells.registry import CELL_REGISTRY
from rnnlab.config import compose
from rnnlab.registry import PLUGINS_ENV, PluginError, Registry, chosen_names, is_class_path
from rnnlab.tasks import TASKS

SRC = Path(__file__).resolve().parents[1] / "src"

# An outside package: one cell file, one task file, entry points for both.
PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "extcells"
version = "0.1"

[project.entry-points."rnnlab.cells"]
gainrnn = "extcells.cells:GainRNN"

[project.entry-points."rnnlab.tasks"]
shortcopy = "extcells.tasks:ShortCopy"
"""

CELL_FILE = '''\
"""h' = tanh(W x + gain * U h + b): a vanilla RNN with a fixed recurrent gain."""
import dataclasses

import jax.numpy as jnp

from rnnlab.cells import Cell, HiddenCarry


@dataclasses.dataclass(frozen=True)
class GainRNN(Cell):
    gain: float = 0.9  # recurrent gain

    gates = ("h",)
    carry_type = HiddenCarry

    def init(self, key, input_size):
        return self._dense_params(key, input_size)

    def step(self, params, carry, xp_BxG):
        U = params["recurrent_kernel"].astype(xp_BxG.dtype)
        h_BxH = jnp.tanh(xp_BxG + self.gain * (carry.h @ U))
        return HiddenCarry(h_BxH), h_BxH

    def param_count(self, input_size):
        H = self.hidden_size
        return H * input_size + H * H + H
'''

TASK_FILE = '''\
import dataclasses

from rnnlab.tasks import CopyTask


@dataclasses.dataclass(frozen=True)
class ShortCopy(CopyTask):
    length: int = 2
    copy_length: int = 3
'''


def install_package(root: Path) -> Path:
    """Builds the package in ``root/extcells`` and pip-installs it into ``root/site`` (a
    folder put on PYTHONPATH; the test's own environment is left alone)."""
    pkg = root / "extcells"
    (pkg / "src" / "extcells").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "src" / "extcells" / "__init__.py").write_text("")
    (pkg / "src" / "extcells" / "cells.py").write_text(CELL_FILE)
    (pkg / "src" / "extcells" / "tasks.py").write_text(TASK_FILE)
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(pkg)],
                   check=True, capture_output=True, timeout=300)
    assert list(site.glob("extcells-0.1.dist-info/entry_points.txt"))
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return install_package(tmp_path_factory.mktemp("plugin"))


def _env(*paths) -> dict:
    env = {k: v for k, v in os.environ.items() if k != PLUGINS_ENV}
    env.update(PYTHONPATH=os.pathsep.join(map(str, [SRC, *paths])), WANDB_SILENT="true",
               HYDRA_FULL_ERROR="1")
    return env


def _python(code: str, env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def restore_registries():
    """Leaves the global registries as they were (these tests register plugins in them)."""
    cells, tasks = dict(CELLS), dict(TASKS)
    yield
    CELLS.clear()
    CELLS.update(cells)
    TASKS.clear()
    TASKS.update(tasks)


# ---- an installed package: entry points -------------------------------------------------------
def test_entry_point_cell_and_task_compose_build_and_pass_check_cell(site, tmp_path):
    proc = _python("""
        import json
        from hydra.errors import ConfigCompositionException
        from rnnlab.cells import CELLS
        from rnnlab.config import compose
        from rnnlab.testing import check_cell
        from rnnlab.train import build_cells, build_task

        cfg = compose(["cell=gainrnn", "cell.gain=0.5", "cell.hidden_size=4",
                       "task=shortcopy"])
        (cell,) = build_cells(cfg)
        task = build_task(cfg)
        check_cell(cell, 3)
        try:
            compose(["cell=gainrnn", "cell.gian=0.5"])
            typo = "accepted"
        except ConfigCompositionException as err:
            typo = str(err)
        print(json.dumps({"cell": repr(cell), "task": repr(task), "typo": typo,
                          "registered": sorted(CELLS), "cfg_name": cfg.cell.name}))
    """, _env(site), tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["cfg_name"] == "gainrnn" and "gainrnn" in out["registered"]
    assert out["cell"].startswith("GainRNN(hidden_size=4") and "gain=0.5" in out["cell"]
    assert out["task"] == "ShortCopy(length=2, copy_length=3, num_symbols=8)"
    assert "Could not override 'cell.gian'" in out["typo"]


def test_a_broken_entry_point_is_named_and_the_others_still_load(tmp_path):
    """One installed package with a broken entry point beside one that works: the broken one
    is named in a warning and refused by name (one line, exit 2, on the command line); the
    working plugin cell and the built-in cells run as usual."""
    site = tmp_path / "site"
    for dist, entry in (("brokenplug", "bad = nosuchmodule.cells:Bad"),
                        ("goodplug", "good = goodcells:GoodRNN")):
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[rnnlab.cells]\n{entry}\n")
    (site / "goodcells.py").write_text(
        "import dataclasses\nfrom rnnlab.cells import SimpleRNN\n\n\n"
        "@dataclasses.dataclass(frozen=True)\nclass GoodRNN(SimpleRNN):\n    pass\n")
    named = ("entry point bad = 'nosuchmodule.cells:Bad' (group rnnlab.cells, distribution "
             "brokenplug) failed to load: ModuleNotFoundError")
    proc = _python("""
        from rnnlab.config import compose
        print(compose(['cell=lstm']).cell.name, compose(['cell=good']).cell.name)
        """, _env(site), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["lstm", "good"]
    assert f"[rnnlab] warning: {named}" in proc.stderr, proc.stderr
    assert "No module named 'nosuchmodule'; cell 'bad' is not available" in proc.stderr
    env = _env(site)
    del env["HYDRA_FULL_ERROR"]
    proc = subprocess.run([sys.executable, "-m", "rnnlab.run", "cell=bad", "--cfg", "job"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"[rnnlab] error: cell=bad: {named}"), (
        proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_installed_cell_sweeps_and_reports_from_the_command_line(site, tmp_path):
    # a short sweep beside the LSTM, at a matched parameter budget, then the report
    env = _env(site)
    args = ["-m", "cell=lstm,gainrnn", "task=shortcopy", "model.param_budget=400",
            "train.steps=4", "train.log_every=2", "train.num_seeds=2", "train.batch_size=4",
            "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
            "logger.progress=false", "logger.plots=false", "logger.wandb.mode=disabled",
            f"hydra.sweep.dir={tmp_path}/sweep"]
    proc = subprocess.run([sys.executable, "-m", "rnnlab.run", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summaries = {}
    for path in sorted((tmp_path / "sweep").glob("*/summary.json")):
        summary = json.loads(path.read_text())
        summaries[summary["cell"]] = summary
    assert sorted(summaries) == ["gainrnn", "lstm"]
    for summary in summaries.values():
        assert summary["status"] == "ok"
        assert abs(summary["param_count"] - 400) < 100  # both matched to the budget
    gradients = list((tmp_path / "sweep").glob("*_gainrnn/gradients.npz"))
    assert gradients, "no gradient norms through time for the plugin cell"
    proc = subprocess.run([sys.executable, "-m", "rnnlab.report", str(tmp_path / "sweep")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "gainrnn" in (tmp_path / "sweep" / "report.md").read_text()


# ---- nothing installed: a class path, or RNNLAB_PLUGINS ---------------------------------------
def test_class_path_as_the_cell_name(tmp_path, monkeypatch, restore_registries):
    (tmp_path / "pathcells.py").write_text(CELL_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose(["cell=pathcells.GainRNN", "cell.gain=0.25"])
    assert cfg.cell.name == "pathcells.GainRNN" and cfg.cell.gain == 0.25
    assert CELLS["pathcells.GainRNN"].__module__ == "pathcells"
    with pytest.raises(ConfigCompositionException, match=r"cell\.gian"):
        compose(["cell=pathcells.GainRNN", "cell.gian=0.25"])
    # the colon form, in a sweep override
    assert chosen_names(["-m", "cell=lstm,pathcells:GainRNN", "task=copy"], "cell") == [
        "lstm", "pathcells:GainRNN"]
    # Hydra expands glob() itself (it needs its config loader: this raised at import) and
    # resolves an interpolation (it was imported as a module '${oc')
    assert chosen_names(["-m", "cell=glob(min*)"], "cell") == []
    assert not is_class_path("${oc.env:MYCELL,gru}") and is_class_path("pathcells:GainRNN")
    # in the run folder's name the class path's ':' (unsafe in paths) becomes a '.'
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from rnnlab.config import config_dir, register_configs

    register_configs(["cell=pathcells:GainRNN"])
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        full = hydra_compose(config_name="config", overrides=["cell=pathcells:GainRNN"],
                             return_hydra_config=True)
    assert OmegaConf.select(full, "hydra.run.dir").endswith("_copy_pathcells.GainRNN")
    assert full.cell.name == "pathcells:GainRNN"


def test_plugins_env_variable_imports_modules(tmp_path, monkeypatch, restore_registries):
    (tmp_path / "envcells.py").write_text(CELL_FILE + textwrap.dedent('''
        from rnnlab.cells import register_cell
        register_cell("envgain")(GainRNN)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(PLUGINS_ENV, " envcells , ")
    CELL_REGISTRY.load_plugins(force=True)
    assert CELLS["envgain"].__module__ == "envcells"
    assert compose(["cell=envgain"]).cell.gain == 0.9


def test_plugin_errors_name_the_plugin(tmp_path, monkeypatch, restore_registries):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "notcells.py").write_text("class Plain:\n    pass\nimport dataclasses\n"
                                          "@dataclasses.dataclass(frozen=True)\n"
                                          "class NotACell:\n    width: int = 1\n")
    with pytest.raises(PluginError, match=r"cell='nosuch.Mod': cannot import module 'nosuch'"):
        CELL_REGISTRY.get("nosuch.Mod")
    with pytest.raises(PluginError, match=r"module 'notcells' has no attribute 'Missing'"):
        CELL_REGISTRY.get("notcells.Missing")
    with pytest.raises(PluginError, match=r"cell='notcells.Plain' must be a dataclass"):
        CELL_REGISTRY.get("notcells.Plain")
    with pytest.raises(PluginError, match=r"must subclass rnnlab.cells.base.Cell; got "
                                          r"notcells.NotACell"):
        CELL_REGISTRY.get("notcells.NotACell")
    monkeypatch.setenv(PLUGINS_ENV, "nosuch_module")
    with pytest.raises(PluginError, match="RNNLAB_PLUGINS names module 'nosuch_module'"):
        CELL_REGISTRY.load_plugins(force=True)


def test_unknown_name_lists_the_registered_and_the_class_path_form():
    with pytest.raises(ValueError, match=r"unknown cell 'lstmm'; registered cells: \[.*'lstm'"
                                         r".*\] \(or a class path"):
        CELL_REGISTRY.get("lstmm")


def test_a_fresh_registry_reads_its_entry_point_group():
    assert Registry("cell").entry_point_group == "rnnlab.cells"
    assert Registry("task").entry_point_group == "rnnlab.tasks"


@dataclasses.dataclass(frozen=True)
class _SubRNN(SimpleRNN):
    pass


def test_a_subclass_gets_its_own_registered_name(restore_registries):
    CELL_REGISTRY.register("subrnn_for_test")(_SubRNN)
    assert _SubRNN.registered_name == "subrnn_for_test"
    assert SimpleRNN.registered_name == "rnn"


@pytest.mark.parametrize("args, extra_env, message", [
    (["cell=nosuchpkg.cells.Cell"], {},
     "cell='nosuchpkg.cells.Cell': cannot import module 'nosuchpkg.cells'"),
    (["-m", "cell=lstm,notcells.Missing"], {},
     "cell='notcells.Missing': module 'notcells' has no attribute 'Missing'"),
    (["--cfg", "job"], {PLUGINS_ENV: "nosuch_module"},
     "RNNLAB_PLUGINS names module 'nosuch_module', which cannot be imported"),
])
def test_a_plugin_that_does_not_load_is_one_line_on_the_command_line(tmp_path, args, extra_env,
                                                                    message):
    (tmp_path / "notcells.py").write_text("x = 1\n")
    env = {**_env(tmp_path), **extra_env}
    del env["HYDRA_FULL_ERROR"]
    proc = subprocess.run([sys.executable, "-m", "rnnlab.run", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"[rnnlab] error: {message}"), proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__")
    assert left == ["notcells.py"]  # nothing written


BROKEN_CELLS = textwrap.dedent('''
    import dataclasses

    import jax.numpy as jnp

    from rnnlab.cells import Cell, HiddenCarry, SimpleRNN


    @dataclasses.dataclass(frozen=True)
    class WideCarry(SimpleRNN):  # the carry doubles its width each step
        def step(self, params, carry, xp_BxG):
            new, h = super().step(params, carry, xp_BxG)
            return HiddenCarry(h=jnp.concatenate([new.h, new.h], -1)), h


    @dataclasses.dataclass(frozen=True)
    class WideOutput(SimpleRNN):  # outputs 2H
        def step(self, params, carry, xp_BxG):
            new, h = super().step(params, carry, xp_BxG)
            return new, jnp.concatenate([h, h], -1)


    @dataclasses.dataclass(frozen=True)
    class NoStep(Cell):  # neither step nor update
        gates = ("h",)

        def init(self, key, input_size):
            return self._dense_params(key, input_size)

        def param_count(self, input_size):
            return self.gate_size * (input_size + self.hidden_size + 1)
''')


@pytest.mark.parametrize("name, fragment", [
    ("WideCarry", "rule carry_shape (every carry field is [B, H] in the compute dtype; "
     "initial_carry is zeros): step changed carry field 'h' from float32[3, 8] to "
     "float32[3, 16]"),
    ("WideOutput", "rule output (step's output h_BxH is [B, H] and equals the new carry's "
     "h): step output is float32[3, 16]; expected float32[B=3, H=8]"),
    ("NoStep", "rule step (step(params, carry, xp_BxG) -> (carry, h_BxH) runs on [B, G] "
     "projections): step(params, carry, xp_BxG) raised NotImplementedError"),
])
def test_a_cell_that_breaks_the_contract_is_refused_when_the_run_is_built(
        name, fragment, tmp_path, monkeypatch, restore_registries):
    """Shapes alone (nothing compiled): before, such cells failed after compiling, with JAX's
    scan error or a broadcasting error, and left a run folder."""
    from rnnlab.checks import ConfigError
    from rnnlab.train import make_train

    (tmp_path / "brokencells.py").write_text(BROKEN_CELLS)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        make_train(compose([f"cell=brokencells:{name}", "cell.hidden_size=8"]))
    message = str(err.value)
    assert message.startswith(f"cell=brokencells:{name}: {name}(hidden_size=8): "), message
    assert fragment in message and "\n" not in message
