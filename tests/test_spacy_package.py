"""`spacy package` of a pipeline holding our component: the wheel requires bilstm-nlp, and in a
fresh venv holding only that wheel and the bilstm-nlp wheel (their dependencies met, as `pip check`
says) `spacy.load` gives the entities and probabilities the pipeline gives here."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import spacy

from tests.conftest import WheelVenv, clean_env

ROOT = Path(__file__).resolve().parents[1]
TEXT = "EU rejects German call to boycott British lamb. Peter Blackburn flew to Brussels."
# Run in the fresh venv: what the loaded package sets, and where its code comes from.
SCRIPT = """
import json, sys, spacy, bilstm_nlp, en_bilstm_ner
nlp = spacy.load("en_bilstm_ner")
doc = nlp(sys.argv[1])
print(json.dumps({
    "bilstm_nlp": bilstm_nlp.__file__,
    "package": en_bilstm_ner.__file__,
    "pipe_names": nlp.pipe_names,
    "ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
    "scores": doc.spans["bilstm_ents"].attrs["scores"],
}))
"""


def _run(*command: str | Path, cwd: Path | None = None, env: dict | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_spacy_package_wheel_installs_and_loads_in_a_fresh_venv(
    wheel_venv: WheelVenv, tmp_path: Path
) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_tagger", config={"model": "ner"})
    nlp.initialize()
    nlp.to_disk(tmp_path / "pipeline")
    doc = nlp(TEXT)
    here = {
        "ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
        "scores": doc.spans["bilstm_ents"].attrs["scores"],
    }
    assert len(here["ents"]) >= 4

    packages = tmp_path / "packages"
    packages.mkdir()
    _run(sys.executable, "-m", "spacy", "package", tmp_path / "pipeline", packages,
         "--name", "bilstm_ner", "--version", "0.0.1", "--build", "wheel")  # fmt: skip
    [wheel] = packages.glob("en_bilstm_ner-0.0.1/dist/en_bilstm_ner-0.0.1-*.whl")
    # spaCy finds the distribution behind the factory's module and makes it a requirement.
    metadata = zipfile.ZipFile(wheel).read("en_bilstm_ner-0.0.1.dist-info/METADATA").decode()
    assert any(line.startswith("Requires-Dist: bilstm-nlp") for line in metadata.splitlines()), (
        metadata
    )

    wheel_venv.install(wheel)
    assert wheel_venv.unmet_requirements("en-bilstm-ner", "bilstm-nlp") == []
    venv = wheel_venv.root

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    python = venv / "bin" / "python"
    there = json.loads(_run(python, "-c", SCRIPT, TEXT, cwd=elsewhere, env=clean_env()))
    assert Path(there["bilstm_nlp"]).resolve().is_relative_to(venv.resolve())
    assert Path(there["package"]).resolve().is_relative_to(venv.resolve())
    assert there["pipe_names"] == ["bilstm_tagger"]
    assert there["ents"] == here["ents"]
    assert there["scores"] == pytest.approx(here["scores"], abs=1e-6)
