"""The wheel ships every module under its installed name (DESIGN §1).

``packages`` in pyproject.toml is an explicit list, and ``protocol/``, ``api/`` and ``tools/`` are
installed as ``tmq.protocol``, ``tmq.api`` and ``tmq.tools``. A new subpackage that nobody adds to
that list still builds, and is silently missing from every install; so these tests build a wheel
and compare it with the source tree, which decides what is expected.
"""

from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Source directory -> the directory its modules are installed under. The mapping is DESIGN §1's,
# written out here rather than read from pyproject.toml, so a wrong pyproject cannot agree with it.
INSTALLED_AS = {
    "tmq": "tmq",
    "protocol": "tmq/protocol",
    "api": "tmq/api",
    "tools": "tmq/tools",
    # The twistd plugin goes into Twisted's own namespace, at the same path.
    "twisted/plugins": "twisted/plugins",
}

# Top-level entries that are not part of the distribution's source; .venv and .tox hold whole
# virtualenvs, and a stale build/ would leak deleted modules into the wheel.
NOT_SOURCE = {
    ".git",
    ".venv",
    ".tox",
    "build",
    "dist",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
}


def _ignore_non_source(directory: str, names: list[str]) -> set[str]:
    if Path(directory) == REPO:
        return {name for name in names if name in NOT_SOURCE or name.endswith(".egg-info")}
    return {"__pycache__"} & set(names)


def _expected_modules() -> set[str]:
    expected = set()
    for source, installed in INSTALLED_AS.items():
        for path in (REPO / source).rglob("*.py"):
            expected.add(f"{installed}/{path.relative_to(REPO / source).as_posix()}")
    return expected


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """A wheel built, without network access, from a copy of the source tree.

    The copy keeps the build's build/ and egg-info out of the repo, where the tox envs running in
    parallel would otherwise share them.
    """
    if importlib.util.find_spec("build") is None:
        pytest.fail(
            "the packaging tests need the `build` package, and setuptools and wheel for "
            "building without network access: install the test extra, pip install '.[test]'",
            pytrace=False,
        )
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=_ignore_non_source)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", work, source],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{built.stdout}\n{built.stderr}", pytrace=False)
    (path,) = work.glob("*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def _console_scripts(wheel: zipfile.ZipFile) -> dict[str, str]:
    (name,) = (n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read(name).decode())
    return dict(entry_points["console_scripts"])


class WheelContentsTests:
    def test_every_source_module_is_installed(self, wheel: zipfile.ZipFile) -> None:
        """Every .py file under tmq/, protocol/, api/, tools/ and twisted/plugins/ is in the
        wheel under its installed name."""
        missing = _expected_modules() - set(wheel.namelist())
        assert not missing, (
            f"modules missing from the wheel: {sorted(missing)}; "
            "check [tool.setuptools] packages in pyproject.toml"
        )

    def test_nothing_installed_outside_tmq_and_the_plugin(self, wheel: zipfile.ZipFile) -> None:
        """The wheel installs only tmq, the twistd plugin and its metadata: no top-level
        protocol, api or tools package that would collide with other distributions."""
        top_level = {name.split("/")[0] for name in wheel.namelist()}
        unexpected = {
            name for name in top_level - {"tmq", "twisted"} if not name.endswith(".dist-info")
        }
        assert not unexpected, f"unexpected top-level entries in the wheel: {sorted(unexpected)}"

    def test_twisted_package_files_are_not_shipped(self, wheel: zipfile.ZipFile) -> None:
        """The plugin is dropped into Twisted's namespace without an __init__.py, which would
        overwrite Twisted's own."""
        names = set(wheel.namelist())
        assert "twisted/__init__.py" not in names
        assert "twisted/plugins/__init__.py" not in names


class ConsoleScriptTests:
    def test_tmq_command_runs_the_cli_main(self, wheel: zipfile.ZipFile) -> None:
        """The wheel declares the console script ``tmq = tmq.tools.cli:main``."""
        assert _console_scripts(wheel).get("tmq") == "tmq.tools.cli:main"

    def test_command_module_is_shipped(self, wheel: zipfile.ZipFile) -> None:
        """The module the ``tmq`` console script points at is in the wheel."""
        module = _console_scripts(wheel)["tmq"].partition(":")[0]
        path = f"{module.replace('.', '/')}.py"
        assert path in wheel.namelist(), f"the tmq command's module {path} is not in the wheel"
