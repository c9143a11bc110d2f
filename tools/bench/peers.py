"""The peers' virtualenv (uvicorn with httptools and uvloop, hypercorn, gunicorn, granian;
FastAPI and Flask for the apps suite), created outside the repository, and the peers that come
from Debian (lua-http)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

# pip requirement: what shows it installed (bin/NAME, or a top-level module of site-packages).
# uvicorn[standard] brings httptools and uvloop (uvicorn-fast; gunicorn's and granian's loop);
# gunicorn[http2] the h2 library its h2c needs.
PEER_PACKAGES = {
    "uvicorn[standard]": ("bin/uvicorn", "httptools", "uvloop"),
    "hypercorn": ("bin/hypercorn",),
    "gunicorn[http2]": ("bin/gunicorn", "h2"),
    "granian": ("bin/granian",),
}
APP_PACKAGES = ("fastapi", "flask")  # the apps suite's frameworks (importable, no script)


def installed(venv: Path, what: str) -> bool:
    if what.startswith("bin/"):
        return (venv / what).exists()
    return any(venv.glob(f"lib/python*/site-packages/{what}/"))


def has_gunicorn_asgi(venv: Path) -> bool:
    return any(venv.glob("lib/python*/site-packages/gunicorn/workers/gasgi.py"))


def ensure_peers_venv(venv: Path) -> None:
    """Create the venv if needed and install the peers it lacks."""
    missing = [
        req for req, marks in PEER_PACKAGES.items() if not all(installed(venv, m) for m in marks)
    ]
    if not missing:
        return
    print(f"# installing {' '.join(missing)} in the peers venv {venv}")
    if not (venv / "bin" / "python").exists():
        python3 = shutil.which("python3") or sys.executable
        subprocess.run([python3, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *missing],
        check=True,
        timeout=900,
    )


def ensure_debian(packages: list[str]) -> None:
    """apt-get install the Debian packages (lua-http and a Lua) that are not installed; as
    root only (else the servers that need them are skipped for their missing files)."""
    missing = [pkg for pkg in packages if not debian_installed(pkg)]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"# not installing {' '.join(missing)}: needs root and apt-get")
        return
    print(f"# apt-get install {' '.join(missing)}")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, timeout=900, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, timeout=900, check=False)
        subprocess.run(install, env=env, timeout=900, check=False)


def debian_installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout.endswith("installed")


def ensure_app_packages(venv: Path) -> None:
    """Install the apps suite's frameworks that the peers venv lacks, at the versions prefork's
    own python has (when it has them), so both sides run the same framework."""
    missing = [p for p in APP_PACKAGES if not any(venv.glob(f"lib/python*/site-packages/{p}/"))]
    if not missing:
        return
    specs = []
    for pkg in missing:
        try:
            specs.append(f"{pkg}=={importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            specs.append(pkg)
    print(f"# installing {' '.join(specs)} in the peers venv {venv}")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *specs],
        check=True,
        timeout=900,
    )
