"""Runs command lines of ``python -m rnnlab.run`` in one fresh Python process, each in its own
folder, through the same ``rnnlab.run.main``, and returns what each did: exit status, stdout,
stderr and the names left in its folder. One process for many cases keeps the bad-input
catalogue fast; ``prelude`` is Python run first in that process (e.g. to make a plugin
unimportable), with ``EXTRA`` holding the JSON-decoded ``extra`` argument."""

import json
import os
import subprocess
import sys
from pathlib import Path

LOOP = r"""
import contextlib, io, json, os, sys
from rnnlab import run
results = []
for args, cwd in json.loads(sys.argv[1]):
    os.chdir(cwd)
    sys.argv = ["rnnlab.run", *args]
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run.main()
        except SystemExit as stop:
            code = stop.code
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue(),
                    "left": sorted(os.listdir(cwd)), "cwd": cwd})
print(json.dumps(results))
"""


def run_command_lines(cases: list[tuple[list[str], Path]], prelude: str = "",
                      extra=None, env: dict | None = None) -> list[dict]:
    """``env``: variables set in that process on top of this one's (e.g. ``XLA_FLAGS``)."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "HYDRA_FULL_ERROR"}
    code = "import json, sys\nEXTRA = json.loads(sys.argv[2])\n" + prelude + LOOP
    proc = subprocess.run([sys.executable, "-c", code,
                           json.dumps([(args, str(cwd)) for args, cwd in cases]),
                           json.dumps(extra)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
