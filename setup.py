"""Ships the Hydra config tree (``conf/``) and the experiment presets
(``experiments/*/config.yaml``) inside the wheel as ``rnnlab/conf`` and ``rnnlab/experiments``,
so an installed rnnlab runs without the repository. Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
SHIPPED = (("conf", "**/*.yaml"), ("experiments", "*/config.yaml"))


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        for folder, pattern in SHIPPED:
            for src in sorted((ROOT / folder).glob(pattern)):
                dst = Path(self.build_lib) / "rnnlab" / folder / src.relative_to(ROOT / folder)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPyWithConfigs})
