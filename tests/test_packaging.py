"""The package as users get it: ``pip wheel .`` builds a wheel that installs into a fresh virtual
environment, carries the page's assets, and runs ``serve`` there (not this checkout's code)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import urllib.request
import venv
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="serving needs the 'serve' extra")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new venv with the wheel installed alone; its dependencies come from this environment's
    site-packages through a .pth line (no network, no second torch), whose own .pth files (the
    editable install of this checkout) are not processed."""
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(root / "dist"), "--quiet"],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (root / "dist").glob("gpt_classifier-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True,
        env=_clean_env(),
    ).strip()
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    assert install.returncode == 0, install.stderr
    # after the install: pip would take this checkout's editable install for the wheel
    (Path(site) / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_wheel_installs_with_its_page_and_runs_from_the_venv(fresh_venv):
    code = "import gpt_classifier; print(gpt_classifier.__file__)"
    where = subprocess.check_output(
        [fresh_venv / "bin" / "python", "-c", code],
        text=True,
        env=_clean_env(),
    )
    assert Path(where.strip()).is_relative_to(fresh_venv)
    page = Path(where.strip()).parent / "serving" / "page"
    assert {"index.html", "app.js"} <= {p.name for p in page.iterdir()}
    version = subprocess.run(
        [fresh_venv / "bin" / "gpt-classifier", "--version"],
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    assert version.returncode == 0 and "0.1.0" in version.stdout + version.stderr


def test_the_installed_wheel_serves_the_page(fresh_venv, saved_run, tokenizer_dir):
    server = subprocess.Popen(
        [fresh_venv / "bin" / "gpt-classifier", "serve", str(saved_run), "--port", "0"]
        + ["--tokenizer-dir", str(tokenizer_dir), "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_clean_env(), "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = server.stderr.readline()
        assert "serving" in banner, banner + server.stderr.read()
        base = "http://" + banner.split("http://")[1].split()[0]
        with urllib.request.urlopen(base + "/", timeout=30) as response:
            html = response.read().decode()
        assert "<script" in html
        with urllib.request.urlopen(base + "/page/app.js", timeout=30) as response:
            assert response.status == 200 and b"predictionsCsv" in response.read()
    finally:
        server.terminate()
        server.wait(timeout=60)
