"""Build hook: ship the repository's configs/*.yaml inside the package as tfresp/configs/*.yaml.

configs/ stays the one copy in the source tree (README, tests and notebooks use its paths); the wheel carries
a copy so that ``tfresp fit quickstart`` works after a plain ``pip install`` from any directory. Everything
else is declared in setup.cfg.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

ROOT = Path(__file__).resolve().parent


class build_py(_build_py):  # noqa: N801  (setuptools' command name)
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads configs/ in place (tfresp.configs.directory)
        target = Path(self.build_lib) / "tfresp" / "configs"
        target.mkdir(parents=True, exist_ok=True)
        sources = sorted((ROOT / "configs").glob("*.yaml"))
        if not sources:
            raise SystemExit("setup.py: configs/*.yaml not found (an sdist must include them: MANIFEST.in)")
        for src in sources:
            shutil.copyfile(src, target / src.name)


setup(cmdclass={"build_py": build_py})
