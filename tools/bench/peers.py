"""The peers' virtualenv (uvicorn, hypercorn, gunicorn), created outside the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PEER_PACKAGES = ("uvicorn", "hypercorn", "gunicorn")


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
