"""The built wheel installs into a fresh virtual environment and serves.

prefork's wheel is built (``pip wheel --no-deps``, with build isolation: the backend named in
pyproject.toml comes from the package index pip is configured with) from a copy of the source
tree, so nothing is written into the checkout. A new venv in ``tmp_path`` gets the wheel (its
dependencies from the index) and runs ``<venv>/bin/prefork --bind 127.0.0.1:0 --workers 1
examples/hello.py:reply`` from a directory outside the repository, without PYTHONPATH, so only
the installed copy can be imported. Readiness is polled with a deadline; the master is stopped
by TERM (it must exit 0), and its process group is SIGKILLed in teardown whatever happened.
"""

from __future__ import annotations

import email.parser
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import prefork
from tests.helpers import wait_until
from tests.master_helpers import MasterProc

REPO = Path(__file__).resolve().parent.parent
STEP_TIMEOUT = 120  # one pip or venv command
pytestmark = pytest.mark.timeout(180)  # typically ~15 s; pip may be slower on a cold cache

# not part of a build: environments, caches, build output, VCS
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", ".tox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    "prof",
)  # fmt: skip


def run(argv: list[str | Path], **kwargs: Any) -> str:
    """Run a setup command to completion; its output in the assertion message when it fails."""
    result = subprocess.run(
        [str(a) for a in argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        **kwargs,
    )
    assert result.returncode == 0, (
        f"{argv} exited with {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )
    return result.stdout


def fresh_env() -> dict[str, str]:
    """This environment without what would point Python at the checkout or another venv, or
    choose prefork's implementations (the wheel alone has neither uvloop nor httptools: auto
    must then pick asyncio and the pure-Python parser)."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "NOTIFY_SOCKET"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith(("LISTEN_", "PREFORK_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist = tmp / "src", tmp / "dist"
    shutil.copytree(REPO, src, ignore=IGNORE)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "-q", "--no-deps", "--wheel-dir", dist, src], env=fresh_env())
    (built,) = dist.glob("prefork-*.whl")
    return built


def test_wheel_contents_and_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        dist_info = f"prefork-{prefork.__version__}.dist-info"
        meta = email.parser.Parser().parsestr(whl.read(f"{dist_info}/METADATA").decode())
        entry_points = whl.read(f"{dist_info}/entry_points.txt").decode()
    # only the package: no tests, tools or examples installed as top-level modules
    stray = [n for n in names if not n.startswith(("prefork/", f"{dist_info}/"))]
    assert stray == []
    assert "prefork/__main__.py" in names
    assert re.search(r"^prefork = prefork\.cli:main$", entry_points, re.M)

    assert meta["Name"] == "prefork"
    assert meta["Version"] == prefork.__version__
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["License-Expression"] == "MIT"
    assert meta["Summary"] and "pre-fork" in meta["Summary"]
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "# prefork" in meta.get_payload()  # the README is the long description
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL", []))
    assert set(urls) >= {"Homepage", "Documentation", "Source", "Issues"}
    assert all(u.startswith("https://") for u in urls.values())
    classifiers = meta.get_all("Classifier", [])
    for c in (
        "Framework :: AsyncIO",
        "Topic :: Internet :: WWW/HTTP :: HTTP Servers",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3.11",
    ):
        assert c in classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    requires = meta.get_all("Requires-Dist", [])
    runtime = sorted(r.split(">")[0].split("[")[0] for r in requires if "extra ==" not in r)
    assert runtime == ["h11", "h2", "psutil", "pyOpenSSL", "wsproto"]
    assert set(meta.get_all("Provides-Extra", [])) >= {"test", "dev"}


@pytest.fixture
def venv(tmp_path: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed."""
    env_dir = tmp_path / "venv"
    run([sys.executable, "-m", "venv", env_dir], env=fresh_env())
    python = env_dir / "bin" / "python"
    run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel],
        env=fresh_env(),
    )
    return env_dir


@pytest.fixture
def rundir(tmp_path: Path) -> Path:
    path = tmp_path / "run"  # not the checkout: nothing there to import by accident
    path.mkdir()
    return path


def test_wheel_installs_into_fresh_venv_and_serves(
    venv: Path, rundir: Path, start_master: Callable[..., MasterProc]
) -> None:
    installed = run(
        [venv / "bin" / "python", "-c", "import prefork; print(prefork.__file__)"],
        cwd=rundir,
        env=fresh_env(),
    ).strip()
    assert Path(installed).is_relative_to(venv), installed

    app = f"{REPO / 'examples' / 'hello.py'}:reply"
    argv = [str(venv / "bin" / "prefork"), "--bind", "127.0.0.1:0", "--workers", "1", app]
    master = start_master(argv=argv, cwd=rundir, env=fresh_env(), wait=False)

    def check(pattern: str) -> re.Match[str] | None:
        master.check_running()  # an AssertionError with the tail of its stderr if it exited
        return re.search(pattern, master.stderr())

    port = int(wait_until(lambda: check(r"serving 127\.0\.0\.1:(\d+)"), 30, "the bind").group(1))
    wait_until(lambda: check(r"worker \d+ ready"), 30, "a ready worker")

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/packaging", headers={"User-Agent": "test_packaging"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    assert resp.getheader("content-type") == "text/plain"
    assert body == b"Hello world!\n"

    master.signal(signal.SIGTERM)
    code = master.wait(20)  # an AssertionError if it did not stop within 20 s of TERM
    assert code == 0, master.stderr()[-3000:]
    assert '"GET /packaging HTTP/1.1"' in master.out.read_text()
