"""docs/new_cell.md, run as written: its files are written, its commands run in order.

Fenced blocks with a ``title="PATH"`` are files; ``bash`` blocks are commands, one per line;
blocks without a language are prose (equations, a folder layout). ``pip install`` goes into a
folder put on ``PYTHONPATH`` (``--target``), so the test's environment is left alone, and
``python`` is this interpreter."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "new_cell.md"
BLOCK = re.compile(r"^```(\w*)(?: title=\"([^\"]+)\")?\n(.*?)^```$", re.M | re.S)
SWEEP_SECTION = "## 4."


def blocks(text: str):
    """``(language, title, body, position)`` of every fenced block."""
    return [(m.group(1), m.group(2), m.group(3), m.start()) for m in BLOCK.finditer(text)]


def _command(line: str, site: Path) -> list[str]:
    words = shlex.split(line)
    if words[:2] == ["pip", "install"]:
        return [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                "--no-build-isolation", "--no-index", "--target", str(site), *words[2:]]
    assert words[0] == "python", f"unexpected command in {DOC.name}: {line}"
    return [sys.executable, *words[1:]]


def run_tutorial(folder: Path, *, include_sweep: bool) -> dict[str, str]:
    """Writes the doc's files and runs its commands in ``folder``; returns each command's
    output. Fails on any block it does not know how to run."""
    text = DOC.read_text()
    sweep_at = text.index(SWEEP_SECTION)
    site = folder / "site"
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(site)])}
    env.pop("RNNLAB_PLUGINS", None)
    outputs = {}
    for language, title, body, position in blocks(text):
        if title:
            path = folder / title
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        elif language == "bash":
            if position > sweep_at and not include_sweep:
                continue
            for line in filter(None, (s.strip() for s in body.splitlines())):
                proc = subprocess.run(_command(line, site), cwd=folder, env=env,
                                      capture_output=True, text=True, timeout=900)
                assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
                outputs[line] = proc.stdout
        else:
            assert language == "", f"block of language {language!r} at {position} is not run"
    return outputs


def test_doc_blocks_are_all_of_a_known_kind():
    found = blocks(DOC.read_text())
    titled = [t for _, t, _, _ in found if t]
    assert titled == ["mycells/pyproject.toml", "mycells/src/mycells/__init__.py",
                      "mycells/src/mycells/mgu.py", "mycells/tests/test_mgu.py"]
    assert sum(lang == "bash" for lang, _, _, _ in found) == 4


def test_tutorial_cell_passes_its_own_tests_in_process(tmp_path, monkeypatch):
    # the doc's cell and test files, imported here and run without installing anything
    for _, title, body, _ in blocks(DOC.read_text()):
        if title:
            (tmp_path / title).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / title).write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path / "mycells" / "src"))
    monkeypatch.syspath_prepend(str(tmp_path / "mycells" / "tests"))
    import test_mgu

    test_mgu.test_mgu_passes_the_shared_suite()


@pytest.mark.slow
def test_tutorial_package_installs_tests_and_composes(tmp_path):
    outputs = run_tutorial(tmp_path, include_sweep=False)
    (check,) = [out for line, out in outputs.items() if "pytest" in line]
    assert "2 passed" in check
    (config,) = [out for line, out in outputs.items() if "--cfg job" in line]
    assert "name: mymgu" in config and "hidden_size: 32" in config
    assert "forget_bias: 1.0" in config  # the dataclass default, through the derived schema


@pytest.mark.slow
def test_tutorial_sweep_and_report(tmp_path):
    run_tutorial(tmp_path, include_sweep=True)
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "mymgu" in report and "lstm" in report
    assert (tmp_path / "sweep" / "gradient_flow_copy.png").exists()
