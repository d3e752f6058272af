"""Shared fixtures: the real corpora in ../shared/corpora and the hand-made samples in corpora/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# The tests draw the same property-test examples on every run, so CI fails for a change, never
# for a fresh draw; HYPOTHESIS_PROFILE=explore draws new ones each run, to look for faults
# (`pytest --hypothesis-seed N` repeats a draw).
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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
