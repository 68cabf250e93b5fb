"""What ships: the sdist carries what the README points to, sdist and wheel carry the
LICENSE, every program answers --version, and grpcio-tools is not a runtime dependency.

The sdist is built from the checkout and the wheel from the unpacked sdist (as pip
does), with the venv's setuptools and no network (`setuptools.build_meta` directly).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _build(kind: str, src: Path, out: Path) -> Path:
    code = f"from setuptools import build_meta as b; print(b.build_{kind}({str(out)!r}))"
    # contents only: compiling the hot modules is the install's business (and needs
    # mypy in the build environment, which pip provides and this venv does not)
    env = {**os.environ, "HOTLINK_COMPILE": "0"}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300, env=env
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out / res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    out = tmp_path_factory.mktemp("dist")
    sdist = _build("sdist", REPO, out)
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
        tf.extractall(out / "src", filter="data")
    root = out / "src" / names[0].split("/")[0]
    wheel = _build("wheel", root, out)
    with zipfile.ZipFile(wheel) as zf:
        wnames = zf.namelist()
    prefix = names[0].split("/")[0] + "/"
    return [n.removeprefix(prefix) for n in names], wnames


def test_sdist_has_what_the_readme_points_to(dists: tuple[list[str], list[str]]) -> None:
    sdist, _ = dists
    for path in (
        "LICENSE",
        "README.md",
        "benchmark.sh",
        "docker-compose.otel.yaml",
        "docs/design.md",
        "docs/performance.md",
        "docs/reliability.md",
        "otel/collector.yaml",
        "fuzz/run.py",
        "proto/generate.py",
        "proto/hotlink/v1/agent.proto",
        "tests/test_readme.py",
    ):
        assert path in sdist, path


def test_wheel_has_the_license(dists: tuple[list[str], list[str]]) -> None:
    _, wheel = dists
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel), wheel


def test_wheel_has_every_module(dists: tuple[list[str], list[str]]) -> None:
    """Packages are listed one by one in pyproject: a new subpackage must be too."""
    _, wheel = dists
    for folder in ("wire", "common", "relay", "agent", "ctl", "telemetry"):
        for src in (REPO / folder).rglob("*.py"):
            if "__pycache__" in src.parts:
                continue
            name = "hotlink/" + src.relative_to(REPO).as_posix()
            assert name in wheel, name


def test_license_is_the_apache_2_text() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0"


def test_grpcio_tools_is_a_build_tool_only() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("grpcio-tools") for d in meta["dependencies"])
    extras = meta["optional-dependencies"]
    assert any(d.startswith("grpcio-tools") for d in extras["dev"])
    # CI installs '.[test]' and runs the generated-code check: it needs protoc there
    assert any(d.startswith("grpcio-tools") for d in extras["test"])


@pytest.mark.parametrize("prog", ["hotlinkctl", "hotlink-relay", "hotlink-agent"])
def test_version(prog: str) -> None:
    exe = BIN / prog
    res = subprocess.run(
        [str(exe), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("HOTLINK_")},
    )
    assert res.returncode == 0, res.stderr
    from importlib.metadata import version

    assert res.stdout.startswith(f"{prog} {version('hotlink')} ")
