"""Build hook. Everything about the package is in pyproject.toml; this file only adds
the mypyc-compiled copies of the per-message hot modules (`common/hot_modules.py`).

HOTLINK_COMPILE selects what happens:
  auto (default)  compile when mypyc and a C compiler work; otherwise install pure
                  Python and say so on the build output
  1               compile or fail the install (CI uses this, so a module that stops
                  type-checking or compiling is caught)
  0               pure Python
`hotlinkctl bench` and the agent's and relay's start-up log say which one runs.
"""

from __future__ import annotations

import importlib.machinery
import os
import runpy
import shutil
import sys
import tomllib
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
MODE = os.environ.get("HOTLINK_COMPILE", "auto").strip().lower()
if MODE not in ("auto", "0", "1"):
    sys.exit(f"HOTLINK_COMPILE must be auto, 0 or 1, not {MODE!r}")
HOT = runpy.run_path(str(ROOT / "common" / "hot_modules.py"))
#: where the sources are staged under their installed names (mypyc names extension
#: modules after the file's place in a package tree, and ours is mapped by package-dir)
STAGE = ROOT / "build" / "mypyc-src"


def _say(msg: str) -> None:
    print(f"hotlink build: {msg}", file=sys.stderr)


def _package_dirs() -> dict[str, Path]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {pkg: ROOT / folder for pkg, folder in mapping.items()}


def _stage() -> list[str]:
    """Copy every package's modules to STAGE/hotlink/...; the hot ones get the digest
    of their source appended (`hot_modules.status` compares it). Returns their paths."""
    shutil.rmtree(STAGE, ignore_errors=True)
    dirs = _package_dirs()
    for pkg, folder in dirs.items():
        dest = STAGE.joinpath(*pkg.split("."))
        dest.mkdir(parents=True, exist_ok=True)
        for src in folder.iterdir():
            if src.suffix in (".py", ".pyi"):
                shutil.copyfile(src, dest / src.name)
    paths = []
    for name in HOT["HOT_MODULES"]:
        pkg, mod = name.rsplit(".", 1)
        source = (dirs[pkg] / f"{mod}.py").read_bytes()
        staged = STAGE.joinpath(*pkg.split("."), f"{mod}.py")
        digest = HOT["source_digest"](source)
        staged.write_bytes(source + f'\n{HOT["DIGEST_ATTR"]} = "{digest}"\n'.encode())
        paths.append(str(staged))
    return paths


#: setuptools commands that build code (the metadata steps before them need no compile)
BUILDS = frozenset({"build", "build_ext", "bdist_wheel", "editable_wheel", "install", "develop"})


def _remove_built_in_place() -> None:
    """Extensions an earlier editable install left next to the sources: Python would
    import them before the .py files, also after a module left HOT_MODULES or with
    HOTLINK_COMPILE=0 (the package has no C extensions of its own)."""
    for folder in set(_package_dirs().values()):
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            for old in folder.glob(f"*{suffix}"):
                old.unlink()


def _ext_modules() -> list:
    if not BUILDS.intersection(sys.argv[1:]):
        return []
    if "editable_wheel" in sys.argv or "develop" in sys.argv:
        _remove_built_in_place()
    if MODE == "0":
        _say("HOTLINK_COMPILE=0: pure Python")
        return []
    try:
        from mypyc.build import mypycify

        paths = [os.path.relpath(p, STAGE) for p in _stage()]
        os.environ["MYPYPATH"] = str(STAGE)
        # The other modules are read for their types only (follow-imports=silent).
        # Third-party packages count as Any, whether or not the build environment
        # has them (no-site-packages): the result does not depend on what is installed.
        flags = [
            "--explicit-package-bases",
            "--ignore-missing-imports",
            "--follow-imports=silent",
            "--no-site-packages",
        ]
        # Run from the staged tree so that compiled code names its source in
        # tracebacks as "hotlink/wire/envelope.py", the file's place in the package,
        # not a path in a build directory that is gone after the install.
        here = os.getcwd()
        os.chdir(STAGE)
        try:
            return mypycify(
                [*paths, *flags],
                group_name=HOT["GROUP"],
                opt_level="3",
                target_dir=str(ROOT / "build" / "mypyc"),
            )
        finally:
            os.chdir(here)
    except (Exception, SystemExit) as exc:  # mypy's type errors end in SystemExit
        if MODE == "1":
            raise
        _say(f"not compiling the hot modules ({exc!r}); installing pure Python")
        return []


class OptionalBuildExt(build_ext):
    """A C compiler that fails (or is missing) leaves a pure-Python install, unless
    HOTLINK_COMPILE=1; no half-built set of extensions is left behind."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if MODE == "1":
                raise
            _say(f"compiling the hot modules failed ({exc}); installing pure Python")
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
