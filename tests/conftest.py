"""Shared fixtures: the real corpora in ../shared/corpora and the hand-made samples in corpora/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock
from hypothesis import settings

# The tests draw the same property-test examples on every run, so CI fails for a change, never
# for a fresh draw; HYPOTHESIS_PROFILE=explore draws new ones each run, to look for faults
# (`pytest --hypothesis-seed N` repeats a draw).
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Under pytest-xdist (the README's test command: `-n 2 --dist loadfile`, each test file whole on
# one worker, so its module fixtures are made once) the workers share the machine's cores: each
# computes on one thread (torch reads this when first imported; the CLI and server subprocesses
# inherit it), so two workers on two cores do not fight over them. Tests of threads set their own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "corpora" / "samples"


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    """The real corpora: env `BILSTM_NLP_CORPORA`, else `../shared/corpora` next to the repo.

    Skips the test when they are absent, except on CI (`CI=true`), where their absence fails it.
    """
    configured = os.environ.get("BILSTM_NLP_CORPORA")
    root = Path(configured) if configured else REPO_ROOT.parent / "shared" / "corpora"
    if not root.is_dir():
        reason = f"real corpora not found at {root} (set BILSTM_NLP_CORPORA to their folder)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return root


@pytest.fixture(scope="session")
def samples() -> Path:
    """The hand-made sample corpora shipped in `corpora/samples`, laid out like the real ones."""
    return SAMPLES


@pytest.fixture
def datasets_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A datasets cache folder for this test session, so tests leave ~/.cache alone."""
    import datasets

    folder = tmp_path_factory.getbasetemp() / "hf_datasets_cache"
    folder.mkdir(exist_ok=True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", folder)
    return folder


@dataclass(frozen=True)
class WheelVenv:
    """A fresh venv with the built bilstm-nlp wheel installed, and the wheel itself."""

    root: Path
    python: Path
    wheel: Path

    def install(self, *wheels: Path) -> None:
        """Installs more wheels, without dependencies and without an index."""
        command = [self.python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", *wheels]
        subprocess.run([str(part) for part in command], check=True, env=clean_env())

    def unmet_requirements(self, *projects: str) -> list[str]:
        """`pip check`'s complaints about these projects' requirements, as the venv sees them."""
        from packaging.utils import canonicalize_name

        wanted = {canonicalize_name(project) for project in projects}
        check = [str(self.python), "-m", "pip", "check"]
        done = subprocess.run(check, capture_output=True, text=True, env=clean_env())
        # 0: nothing broken; 1: complaints listed. Anything else is pip itself failing, which
        # must not read as "no complaints".
        assert done.returncode in (0, 1), f"pip check failed:\n{done.stdout}\n{done.stderr}"
        # A complaint reads "<project> <version> requires ..." or "... has requirement ...".
        return [
            line
            for line in done.stdout.splitlines()
            if line.split() and canonicalize_name(line.split()[0]) in wanted
        ]


def clean_env() -> dict[str, str]:
    """The environment for commands run in a fresh venv."""
    # Nothing of this interpreter's paths may leak into the fresh venv but what the .pth adds;
    # pip keeps no cache of what the tests install, so a run leaves nothing behind in ~/.cache.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return env | {"PIP_NO_CACHE_DIR": "1"}


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> WheelVenv:
    """The checkout built as a wheel and installed in a fresh venv, shared by the packaging tests.

    The dependencies (torch, spaCy, ...) come from this interpreter's site-packages, appended
    after the venv's own by a .pth file, so `bilstm_nlp` can only come from the wheel. A second
    copy of them would cost each run about 1.5 GB of disk and two minutes; `pip check` in the
    venv still proves the wheels' requirements are met by what it sees.
    """
    base = tmp_path_factory.mktemp("wheel_venv")
    wheels = base / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    # The build works in the checkout's build/, which the other xdist worker may be building in
    # at the same moment (each worker has its own session): one build at a time.
    with FileLock(tmp_path_factory.getbasetemp().parent / "wheel_build.lock"):
        # setuptools reuses build/: a module deleted since the last build would ride along.
        shutil.rmtree(REPO_ROOT / "build", ignore_errors=True)
        subprocess.run([*build, "-w", str(wheels), str(REPO_ROOT)], check=True, env=clean_env())
    [wheel] = wheels.glob("bilstm_nlp-*.whl")
    root = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, env=clean_env())
    venv = WheelVenv(root=root, python=root / "bin" / "python", wheel=wheel)
    venv.install(wheel)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run(
        [str(venv.python), "-c", purelib], check=True, capture_output=True, text=True
    ).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv
