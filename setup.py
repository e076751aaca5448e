"""One build step pyproject.toml cannot declare: ship ``recipes/`` inside the wheel as ``preflab/recipes/``.

``recipes/`` stays the one copy (users of a clone edit it there; tests read it there); the wheel gets a
copy made at build time, which ``preflab recipes`` finds. An editable install reads ``recipes/`` in place.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithRecipes(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        source = Path(__file__).resolve().parent / "recipes"
        target = Path(self.build_lib) / "preflab" / "recipes"
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.glob("*.yaml")):
            shutil.copyfile(path, target / path.name)


setup(cmdclass={"build_py": BuildPyWithRecipes})
