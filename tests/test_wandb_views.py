"""W&B: the online timeout and its message, empty WANDB_* variables, an offline run that
touches no network, and what the W&B run carries; the run folder's run.log and README table."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnlab import logging as rlog
from rnnlab.config import compose

ROOT = Path(__file__).resolve().parents[1]


class _FakeWandb:
    """Stands in for the ``wandb`` module: records the init call and what was printed before
    it, then fails as an unreachable server would."""

    def __init__(self, capsys):
        self.capsys, self.calls = capsys, []

    def Settings(self, **kwargs):
        return kwargs

    def init(self, **kwargs):
        self.calls.append({"printed_before": self.capsys.readouterr().err, **kwargs,
                           "env_mode": os.environ.get("WANDB_MODE"),
                           "error_reporting": os.environ.get("WANDB_ERROR_REPORTING")})
        raise TimeoutError("no answer")


@pytest.fixture
def fake_wandb(monkeypatch, capsys):
    fake = _FakeWandb(capsys)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    for key in ("WANDB_MODE", "WANDB_ERROR_REPORTING", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    return fake, capsys


def test_online_says_at_once_whom_it_contacts_and_for_how_long(fake_wandb, tmp_path):
    fake, capsys = fake_wandb
    cfg = {"logger": {"wandb": {"init_timeout": 7}}}
    sink = rlog.WandbSink(tmp_path, mode="online")
    sink.start(cfg, {})
    call = fake.calls[0]
    assert call["settings"]["init_timeout"] == 7.0
    assert re.search(r"W&B online: contacting https://api\.wandb\.ai \(waiting at most 7 s, "
                     r"logger\.wandb\.init_timeout", call["printed_before"])
    assert "W&B init failed" in capsys.readouterr().err and sink.run is None  # goes on locally


def test_the_default_timeout_is_short_and_bad_values_are_refused(fake_wandb, tmp_path):
    fake, _ = fake_wandb
    assert compose([]).logger.wandb.init_timeout == 15
    rlog.WandbSink(tmp_path, mode="online").start({"logger": {"wandb": {}}}, {})
    assert fake.calls[0]["settings"]["init_timeout"] == rlog.DEFAULT_INIT_TIMEOUT == 15
    with pytest.raises(ValueError, match=r"logger.wandb.init_timeout must be a number of "
                                         r"seconds > 0; got -1"):
        rlog.WandbSink(tmp_path, mode="online").start(
            {"logger": {"wandb": {"init_timeout": -1}}}, {})


def test_offline_switches_off_error_reporting_and_says_nothing(fake_wandb, tmp_path):
    fake, _ = fake_wandb
    rlog.WandbSink(tmp_path, mode="offline").start({}, {})
    call = fake.calls[0]
    assert call["mode"] == "offline" and call["error_reporting"] == "false"
    assert "contacting" not in call["printed_before"]


def test_an_empty_wandb_mode_counts_as_unset(fake_wandb, tmp_path, monkeypatch):
    fake, _ = fake_wandb
    monkeypatch.setenv("WANDB_MODE", "")
    monkeypatch.setenv("WANDB_PROJECT", "  ")
    monkeypatch.setenv("WANDB_ENTITY", "team")
    rlog.WandbSink(tmp_path, mode="offline").start({}, {})
    assert fake.calls[0]["env_mode"] is None and fake.calls[0]["mode"] == "offline"
    assert "WANDB_PROJECT" not in os.environ and os.environ["WANDB_ENTITY"] == "team"


def test_results_rows_put_the_metric_beside_its_baselines():
    summary = {"final": {"loss": {"mean": 0.5, "std": 0.1}, "mae": {"mean": 0.3, "std": 0.0}},
               "baselines": {"loss": 0.8},
               "per_seed": {"0": {"diverged": False}, "1": {"diverged": True}},
               "forecast": {"split": "test", "per_seed": [{"rmse": 1.0}, {"rmse": 3.0}, None],
                            "baselines": {"naive": {"rmse": 1.5}, "ar(2)": {"rmse": 0.5}}}}
    columns, rows = rlog.results_rows(summary)
    table = [dict(zip(columns, r, strict=True)) for r in rows]
    assert table[0] == {"split": "held-out", "metric": "loss", "model mean": 0.5,
                        "model std": 0.1, "seeds": 1, "baseline": "task baseline",
                        "baseline value": 0.8}
    assert table[1]["metric"] == "mae" and table[1]["baseline"] is None
    assert [(r["baseline"], r["model mean"], r["model std"], r["baseline value"])
            for r in table[2:]] == [("naive", 2.0, 1.0, 1.5), ("ar(2)", 2.0, 1.0, 0.5)]


# ---- one offline run through the real entry point ---------------------------------------------
FORECAST_TINY = ["task=forecast", "task.dataset=sine", "task.lookback=8", "cell.hidden_size=4",
                 "train.steps=4", "train.log_every=2", "train.num_seeds=2", "train.batch_size=8",
                 "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
                 "logger.progress=false", "logger.wandb.mode=offline"]


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect", "-o", os.devnull,
                           "true"], capture_output=True).returncode == 0


# one subprocess run (start-up, jax import, W&B's service: about 30 s on 2 CPU cores) serves
# the tests marked slow below
@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """A tiny forecast run, W&B offline, with ``WANDB_MODE=`` (empty) in its environment;
    under strace (when it works here) to record every ``connect`` of every process."""
    tmp = tmp_path_factory.mktemp("offline")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WANDB_") and k not in ("http_proxy", "https_proxy")}
    env.update({"WANDB_MODE": "", "HYDRA_FULL_ERROR": "1"})
    trace = tmp / "connect.txt"
    prefix = (["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace)]
              if _strace_works() else [])
    proc = subprocess.run([*prefix, sys.executable, "-m", "rnnlab.run", *FORECAST_TINY,
                           f"hydra.run.dir={tmp}/run"], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run", proc, (trace if prefix else None)


@pytest.mark.slow
def test_an_offline_run_with_empty_wandb_mode_keeps_its_wandb_run(offline_run):
    run, proc, _ = offline_run
    assert "W&B" not in proc.stderr, proc.stderr[-2000:]
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.mark.slow
def test_an_offline_run_opens_no_network_socket(offline_run):
    _, _, trace = offline_run
    if trace is None:
        pytest.skip("strace is not installed or may not trace here (apt-get install strace)")
    calls = [line for line in trace.read_text().splitlines() if "connect(" in line]
    assert calls, "strace recorded no connect at all: the trace did not work"
    network = [c for c in calls if "AF_INET" in c
               and not re.search(r'inet_addr\("127\.|inet_pton\(AF_INET6, "::1"', c)]
    assert not network, network


@pytest.mark.slow
def test_the_wandb_run_carries_the_results_table_and_figures(offline_run):
    run, _, _ = offline_run
    record = next((run / "wandb").glob("offline-run-*/run-*.wandb")).read_bytes()
    for key in (b"results", b"figures/learning_curve", b"gradients/curves",
                b"gradients/heatmap", b"figures/forecast", b"gradients/layer_0/h/norm_vs_t",
                b"seasonal_naive"):
        assert key in record, key
    assert (run / "forecast.png").stat().st_size > 0


@pytest.mark.slow
def test_run_log_holds_the_console_output(offline_run):
    run, proc, _ = offline_run
    log = (run / "run.log").read_text()
    summary_lines = [line for line in proc.stdout.splitlines() if line.startswith("[rnnlab]")]
    assert len(summary_lines) >= 5
    for line in summary_lines:
        assert line in log
    assert "test span: 80 windows of value" in log and "baseline naive" in log


@pytest.mark.slow
def test_every_file_of_a_run_folder_is_in_the_readme_table(offline_run):
    run, _, _ = offline_run
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("**The run folder**"):readme.index("**W&B**")]
    listed = set(re.findall(r"`([^`]+)`", table))
    for path in run.iterdir():
        if path.name == ".hydra":
            continue
        name = path.name + ("/" if path.is_dir() else "")
        assert name in listed, f"{name} is not in README's run-folder table"


def test_each_packed_job_keeps_its_own_wandb_run(tmp_path, capsys):
    """Packed jobs log to W&B side by side in one process: each job's offline run carries its
    whole history and its results table (no job's run is finished by the next one's start)."""
    from rnnlab import packing
    from rnnlab.loop import build

    base = ["cell=rnn", "cell.hidden_size=4", "task.length=2", "task.copy_length=3",
            "train.steps=4", "train.log_every=2", "train.num_seeds=1", "train.batch_size=4",
            "train.eval_batch_size=8", "gradients.enabled=false", "logger.progress=false",
            "logger.plots=false", "logger.wandb.mode=offline", "train.compilation_cache=null",
            "train.checkpoint_every=0"]
    cfgs = [compose([*base, f"optim.learning_rate={lr}"]) for lr in (1e-3, 1e-2)]
    outcome = packing.execute_packed([(c, tmp_path / f"job{i}", build(c))
                                      for i, c in enumerate(cfgs)])
    assert [o["status"] for o in outcome] == ["ok", "ok"]
    assert "W&B" not in capsys.readouterr().err
    for i in range(2):
        records = list((tmp_path / f"job{i}" / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(records) == 1, records
        # W&B's service writes the file; once in a loaded full suite the results table was
        # not in it yet when read right after run.finish() returned: give it a few seconds
        keys = (b"results", b"eval/loss", b"train/loss")
        for _ in range(50):
            record = records[0].read_bytes()
            if all(key in record for key in keys):
                break
            time.sleep(0.2)
        for key in keys:
            assert key in record, (i, key)
