"""The built wheel carries the shipped models: install it in a fresh venv and tag from elsewhere."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import WheelVenv

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "EU rejects German call to boycott British lamb ."


@pytest.mark.slow
def test_wheel_installs_and_tags_with_the_default_model(
    wheel_venv: WheelVenv, tmp_path: Path
) -> None:
    names = set(zipfile.ZipFile(wheel_venv.wheel).namelist())
    # Subpackages and data are listed in pyproject by hand: one left out would be missing here.
    for package in (
        "integrations/engines",
        "integrations/serve",
        "integrations/runtime",
        "runtime",
    ):
        assert f"bilstm_nlp/{package}/__init__.py" in names
    page = ROOT / "bilstm_nlp/integrations/serve/static"
    assert {f"bilstm_nlp/integrations/serve/static/{p.name}" for p in page.iterdir()} <= names
    assert wheel_venv.unmet_requirements("bilstm-nlp") == []
    venv, python = wheel_venv.root, wheel_venv.python
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    script = (
        "import json, bilstm_nlp\n"
        "model = bilstm_nlp.load('ner')\n"
        f"[result] = bilstm_nlp.tag_sentences(model, [{SENTENCE.split()!r}])\n"
        "print(json.dumps({'file': bilstm_nlp.__file__,"
        " 'spans': [[s.start, s.end, s.label] for s in result.spans]}))\n"
    )
    out = subprocess.run(
        [str(python), "-c", script], cwd=workdir, check=True, capture_output=True, text=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert Path(result["file"]).resolve().is_relative_to(venv.resolve())
    assert result["spans"] == [[0, 1, "ORG"], [2, 3, "MISC"], [6, 7, "MISC"]]
    cli = subprocess.run(
        [str(venv / "bin" / "bilstm-nlp"), "models", "--json"],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = {json.loads(line)["name"] for line in cli.splitlines()}
    assert {"ner", "pos", "chunk", "sentiment"} <= names
