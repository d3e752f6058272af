"""`bilstm-nlp evaluate` on the wrong kind of labels, and `--predictions` where no file can go.

Each is a user's mistake: one `error: ...` line naming the file, exit code 1, no traceback, and
the gold data untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.errors import OutputError
from bilstm_nlp.evaluation.evaluate import TaggerEvaluation, write_predictions

runner = CliRunner()
NER_MODEL = Path(__file__).parent / "data" / "models" / "format-v1-tagger"  # BIOES entity tags
POS_LINES = "Peter NNP\nBlackburn NNP\nvisits VBZ\nBrussels NNP\n\n"
NER_LINES = "Peter B-PER\nBlackburn I-PER\nvisits O\nBrussels B-LOC\n\n"


def _invoke(*args: str) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["evaluate", *args])
    # CliRunner keeps an uncaught exception in `result.exception`; exit codes come as SystemExit.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output.strip().splitlines()


def test_entity_model_on_pos_labels(tmp_path: Path) -> None:
    # It used to end in "ValueError: tag 'VBZ' fits no tag scheme".
    data = tmp_path / "pos.txt"
    data.write_text(POS_LINES)
    code, lines = _invoke(str(NER_MODEL), str(data))
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {data}: holds plain labels ('NNP', 'VBZ'")
    assert "tags entities in scheme BIOES" in lines[0]


def test_pos_model_on_entity_tags(tmp_path: Path) -> None:
    # It used to score every token a miss, with a warning, and exit 0.
    data = tmp_path / "ner.txt"
    data.write_text(NER_LINES)
    code, lines = _invoke("pos", str(data))
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {data}: holds entity tags in scheme IOB2")
    assert "the model tags plain labels" in lines[0]


def test_entity_model_on_entity_tags_still_scores(tmp_path: Path) -> None:
    data = tmp_path / "ner.txt"
    data.write_text(NER_LINES)
    predictions = tmp_path / "predictions.txt"
    code, lines = _invoke(str(NER_MODEL), str(data), "--predictions", str(predictions))
    assert code == 0, lines
    assert [line.split()[:2] for line in predictions.read_text().splitlines()[:4]] == [
        line.split() for line in NER_LINES.splitlines()[:4]
    ]


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ("missing/predictions.txt", "does not exist; create it first"),
        (".", "is a folder"),
        ("ner.txt", "is the data file itself"),
    ],
)
def test_predictions_where_no_file_can_go(tmp_path: Path, where: str, fragment: str) -> None:
    data = tmp_path / "ner.txt"
    data.write_text(NER_LINES)
    target = tmp_path / where
    code, lines = _invoke(str(NER_MODEL), str(data), "--predictions", str(target))
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {target}: ") and fragment in lines[0]
    assert data.read_text() == NER_LINES  # the gold data is never overwritten
    assert not (tmp_path / "missing").exists()


def test_write_predictions_turns_os_errors_into_output_error(tmp_path: Path) -> None:
    result = TaggerEvaluation(1, 1, 100.0, None, [], [], [["B-PER"]], [["Jo"]], [["B-PER"]])
    for target in (tmp_path / "missing" / "p.txt", tmp_path):
        with pytest.raises(OutputError) as info:
            write_predictions(result, target)
        assert info.value.path == str(target) and "cannot write predictions" in info.value.message
