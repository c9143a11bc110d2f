"""The peers' virtualenv (uvicorn, hypercorn, gunicorn; FastAPI and Flask for the apps suite),
created outside the repository."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

PEER_PACKAGES = ("uvicorn", "hypercorn", "gunicorn")
APP_PACKAGES = ("fastapi", "flask")  # the apps suite's frameworks (importable, no script)


def has_gunicorn_asgi(venv: Path) -> bool:
    return any(venv.glob("lib/python*/site-packages/gunicorn/workers/gasgi.py"))


def ensure_peers_venv(venv: Path) -> None:
    if all((venv / "bin" / pkg).exists() for pkg in PEER_PACKAGES):
        return
    print(f"# creating peers venv {venv} ({' '.join(PEER_PACKAGES)})")
    if not (venv / "bin" / "python").exists():
        python3 = shutil.which("python3") or sys.executable
        subprocess.run([python3, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
        check=True,
        timeout=900,
    )


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
