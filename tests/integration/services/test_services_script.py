"""`make services` (hack/services.sh): idempotent, honours external servers, and says what to do without root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "hack" / "services.sh"
ENV_FILE = REPO / ".env.local"

pytestmark = pytest.mark.integration


def run(env: dict[str, str], user: str | None = None, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    cmd = ["bash", str(script)]
    if user:
        cmd = ["runuser", "-u", user, "--", "env", *[f"{k}={v}" for k, v in env.items()], *cmd]
        env = {}
    base = {k: v for k, v in os.environ.items() if not k.startswith("RETAILFLOW_")}
    return subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(os.geteuid() != 0 or not ENV_FILE.exists(), reason="needs root and a prior `make services`")
def test_second_run_changes_nothing():
    before = (ENV_FILE.read_text(), ENV_FILE.stat().st_mtime_ns)
    result = run({})
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("services: ready:")
    for verb in ("installing", "starting", "creating", "writing"):
        assert verb not in result.stderr
    assert (ENV_FILE.read_text(), ENV_FILE.stat().st_mtime_ns) == before


def test_external_servers_are_used_as_they_are(tmp_path):
    env_file = tmp_path / "env"
    result = run({
        "RETAILFLOW_MYSQL_URL": "mysql://u:p@db.example:3306/retail",
        "RETAILFLOW_WAREHOUSE_URL": "postgresql://u:p@wh.example:5432/warehouse",
        "RETAILFLOW_ENV_FILE": str(env_file),
    })
    assert result.returncode == 0, result.stderr
    assert "using external servers" in result.stderr
    assert not env_file.exists()


@pytest.fixture
def shared_dir():
    """A folder the unprivileged user can reach (pytest's own tmp folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="retailflow-services-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def user_script(shared_dir):
    """A copy of the script (and what it sources) that the unprivileged user can read: a checkout
    under /root is private to root, as on a fresh machine."""
    hack = shared_dir / "checkout" / "hack"
    hack.mkdir(parents=True)
    for name in ("services.sh", "lib.sh", "env.sh"):
        shutil.copy2(REPO / "hack" / name, hack / name)
    catalog = hack.parent / "generator" / "retailflow_generator"
    catalog.mkdir(parents=True)
    shutil.copy2(REPO / "generator" / "retailflow_generator" / "catalog.json", catalog / "catalog.json")
    for folder in (hack.parent, hack, hack.parent / "generator", catalog):
        folder.chmod(0o755)
    return hack / "services.sh"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the script as another user")
def test_without_root_it_says_what_to_create_and_writes_nothing(shared_dir, user_script):
    env_file = shared_dir / "env"
    result = run({"RETAILFLOW_ENV_FILE": str(env_file), "PATH": os.environ["PATH"]}, user="nobody", script=user_script)
    assert result.returncode != 0
    assert "without root" in result.stderr
    assert "RETAILFLOW_MYSQL_URL" in result.stderr
    assert not env_file.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the script as another user")
def test_without_root_and_packages_missing_it_names_the_packages(shared_dir, user_script):
    # a PATH with the shell's basic tools only: the database clients and build tools look missing
    bin_dir = shared_dir / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id", "ls", "sort", "tail", "sed", "dirname", "cat", "grep"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    bin_dir.chmod(0o755)
    result = run({"RETAILFLOW_ENV_FILE": str(shared_dir / "env"), "PATH": str(bin_dir)}, user="nobody", script=user_script)
    assert result.returncode != 0
    message = result.stderr
    assert "missing packages:" in message
    assert "mariadb-client" in message and "postgresql-client" in message
    # no python3 on this PATH: the bootstrap venv's package is named too
    assert "python3-venv" in message
    assert "apt-get install -y" in message
    assert "RETAILFLOW_WAREHOUSE_URL" in message
    assert not (shared_dir / "env").exists()
