"""`bilstm-nlp export --format onnx`: a trained model folder → an ONNX model folder.

The step after training, for serving without torch: the whole network (word, casing and char
features, the BiLSTM, the emission projection or the classifier's pooling) becomes one ONNX graph
(`graph.ExportGraph`) with dynamic batch and length axes; the CRF's scores, scheme constraints and
entity boundaries go beside it as arrays (`crf.safetensors`, read by `crf_numpy`), with the
vocabularies and `config.json` (the source's, plus `"backend": "onnx"`). The export checks the
graph with `onnx.checker` and runs it once against the torch model before it says it is done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ...decode_torch import crf_arrays
from ...errors import ConfigError, ModelFileError
from ...nn.encoding import TokenEncoder, collate
from ...nn.model import Classifier, Tagger
from ...runtime.backend import CRF_FILE, ONNX_FILE
from ...serialize import (
    CONFIG_FILE,
    MODEL_CARD,
    VOCAB_FILES,
    check_copy_target,
    load_model,
    read_card,
    refuse_onnx_source,
    resolve_model_path,
    staged_folder,
)
from .graph import ExportGraph

logger = logging.getLogger(__name__)

OPSET = 17
INPUTS = ("word_ids", "casing_ids", "char_ids", "spelling_ids", "mask")
AXES = {
    "word_ids": {0: "batch", 1: "seq_len"},
    "casing_ids": {0: "batch", 1: "seq_len"},
    "char_ids": {0: "spellings", 1: "char_len"},
    "spelling_ids": {0: "batch", 1: "seq_len"},
    "mask": {0: "batch", 1: "seq_len"},
}
# Tokens that exercise every input: mixed lengths, an empty sentence, unknown characters.
_EXAMPLE = [
    ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
    ["Peter", "Blackburn"],
    [],
    ["ünknöwn", "ΩΩ", "x" * 40, "1996-08-22"],
]


QUANTIZATIONS = ("int8",)


def export_onnx(
    source: str | Path, target: str | Path, *, opset: int = OPSET, quantize: str | None = None
) -> Path:
    """Write a trained model as an ONNX model folder.

    Args:
        source: a model folder or a shipped model's name.
        target: the folder to write (created; its files replaced).
        opset: the ONNX opset.
        quantize: `"int8"`: onnxruntime's dynamic quantization of the graph's weights (LSTMs,
            convolution, projections and embeddings; activations are quantized per batch as it
            runs), about a quarter of the float32 size; its scores are no longer the torch
            model's to 1e-4, so the export checks only that it runs. None: float32.
    Returns:
        `target`.
    Raises:
        ConfigError: onnx is not installed, or an unknown `quantize`.
        ModelFileError: `source` is not a model folder, or `target` is a file.
    """
    try:
        import onnx  # noqa: F401  (its absence is a user's to fix, said before any work)
    except ImportError:
        raise ConfigError("ONNX export needs onnx: pip install 'bilstm-nlp[onnx]'") from None
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize must be {' or '.join(QUANTIZATIONS)}, got {quantize!r}")
    directory = resolve_model_path(source)
    refuse_onnx_source(directory)
    model = load_model(directory, quantized=False)
    card = read_card(directory)
    target = check_copy_target(target, [source])
    with staged_folder(target) as stage:
        _write_onnx_folder(model, directory, card, stage, opset, quantize)
    return target


def _write_onnx_folder(
    model: Tagger | Classifier,
    directory: Path,
    card: str,
    stage: Path,
    opset: int,
    quantize: str | None,
) -> None:
    """The graph, CRF arrays, config, vocabularies and card of `model` (loaded from
    `directory`) into the empty folder `stage`, the graph checked against torch."""
    import onnx

    graph = ExportGraph(model)
    encoder = TokenEncoder(model.vocab, model.config.max_word_chars)
    batch = collate([encoder(tokens) for tokens in _EXAMPLE])
    inputs = (batch.word_ids, batch.casing_ids, batch.char_ids, batch.spelling_ids, batch.mask)
    output = "log_probs" if isinstance(model, Classifier) else "emissions"
    if isinstance(model, Tagger) and model.config.doc_memory:
        output = "emission_parts"
    axes = {**AXES, output: {0: "batch"} if output == "log_probs" else {0: "batch", 1: "seq_len"}}
    path = stage / ONNX_FILE
    with warnings.catch_warnings(), _native_stderr_to_log():
        # The legacy exporter's notice, and its warning that an LSTM traced at one batch size
        # may fail at another: the LSTMs start from zero states, and tests run other sizes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            inputs,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUTS),
            output_names=[output],
            dynamic_axes=axes,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    config["backend"] = "onnx"
    # A torch folder's int8 choice is torch's; the graph is float unless --quantize says so.
    config.pop("quantize", None)
    config["onnx"] = {"file": ONNX_FILE, "opset": opset, "output": output}
    if quantize:
        config["onnx"]["quantize"] = quantize
    if isinstance(model, Tagger):
        from safetensors.numpy import save

        # Bytes written by Python: the umask's permissions, as the JSON beside it (`save_file`
        # makes the file 0600).
        (stage / CRF_FILE).write_bytes(save(crf_arrays(model.head)))
        config["onnx"]["crf"] = CRF_FILE
    for filename in VOCAB_FILES.values():
        shutil.copyfile(directory / filename, stage / filename)
    if card:
        (stage / MODEL_CARD).write_text(card, encoding="utf-8")
    text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    (stage / CONFIG_FILE).write_text(text, encoding="utf-8")
    _check_against_torch(model, batch, path)
    if quantize:
        _quantize_int8(path)
        _check_against_torch(model, batch, path, tolerance=None)


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Send what C++ writes to stderr meanwhile to the debug log. The exporter's shape inference
    says it has no rule for packing (`prim::PackPadded`), which the ONNX LSTM's `sequence_lens`
    replaces; the graph is checked against torch after export, so the notice only alarms."""
    try:
        stderr = os.dup(2)
    except OSError:  # no file descriptor 2 (an embedding host): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(stderr, 2)
            os.close(stderr)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                logger.debug("torch.onnx.export: %s", line)


def _quantize_int8(path: Path) -> None:
    """Replace the float32 graph at `path` by its int8 dynamic quantization."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name(path.name + ".int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Its root-logger warnings dump tensor protos it cannot infer a type for; the graph is
        # checked after quantizing, so they only alarm.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(path, quantized, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
    quantized.replace(path)


def _check_against_torch(
    model: Tagger | Classifier, batch, path: Path, tolerance: float | None = 1e-4
) -> None:
    """The exported graph gives the torch model's scores on the example batch (within
    `tolerance`; None: only finite scores of the right shape)."""
    from ...runtime.backend import session_for

    session = session_for(path)
    feeds = {i.name: getattr(batch, i.name).numpy() for i in session.get_inputs()}
    (found,) = session.run(None, feeds)
    with torch.inference_mode():
        if isinstance(model, Tagger) and model.config.doc_memory:
            expected = torch.cat(model.memory_parts(batch), dim=-1).numpy()
        else:
            expected = model(batch).numpy()
    if isinstance(model, Tagger):
        found, expected = found[batch.mask.numpy()], expected[batch.mask.numpy()]
    if found.shape != expected.shape or not np.isfinite(found).all():
        raise ModelFileError("the exported graph gives no finite scores of the right shape", path)
    difference = float(np.abs(found - expected).max())
    if tolerance is not None and not difference <= tolerance:
        raise ModelFileError(f"the exported graph differs from the model by {difference:g}", path)
