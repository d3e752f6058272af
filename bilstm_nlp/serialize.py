"""Model directories: `config.json`, vocabularies as JSON, `model.safetensors`, a README model card.

Loading parses JSON, checks `format_version`, builds the modules from the config, then loads the
weights with `load_state_dict(strict=True)`. No pickle anywhere: a model file cannot run code.
Every failure is a `ModelFileError` naming the file and the problem.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._version import __version__
from .config import ModelConfig, from_dict
from .errors import ConfigError, ModelFileError
from .model import Classifier, Tagger, build_model
from .vocab import Index, Vocab

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILES = {"words": "words.json", "chars": "chars.json", "labels": "labels.json"}
SHIPPED_MODELS = ("ner", "ner-large", "pos", "chunk", "sentiment")


def save_model(
    model: Tagger | Classifier,
    directory: str | Path,
    meta: dict[str, Any] | None = None,
    half_embeddings: bool | None = None,
) -> Path:
    """Write `model` as a model directory (created if needed; files replaced atomically).

    Args:
        model: the model to save.
        directory: target directory.
        meta: JSON-able extras kept in config.json: reader settings, provenance, scores.
        half_embeddings: store the word embeddings as float16 (halves the biggest tensors);
            None keeps what the model was loaded with.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or getattr(model, "meta", {}) or {})
    config = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": "tagger" if isinstance(model, Tagger) else "classifier",
        "scheme": model.scheme,
        "output_scheme": getattr(model, "output_scheme", None),
        "trainable_words": model.vocab.trainable_words,
        "model": dataclasses.asdict(model.config),
        "meta": meta,
    }
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    if half_embeddings is None:
        half_embeddings = getattr(model, "half_embeddings", False)
    if half_embeddings:
        for key in ("embedder.word_embedding.weight", "embedder.fixed_embedding.weight"):
            state[key] = state[key].half()
    _atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(state, str(p)))
    for part, filename in VOCAB_FILES.items():
        items = getattr(model.vocab, part).items
        _atomic_write(
            directory / filename, lambda p, i=items: p.write_text(json.dumps(i, ensure_ascii=False))
        )
    text = json.dumps(config, indent=2, ensure_ascii=False)
    _atomic_write(directory / CONFIG_FILE, lambda p: p.write_text(text + "\n", encoding="utf-8"))
    return directory


def _atomic_write(path: Path, write) -> None:
    # A crash mid-save leaves the previous file, never half of a new one.
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    os.replace(temporary, path)


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model directory from a path or a shipped model's name (`ner`, `pos`, `chunk`, `sentiment`).

    Raises:
        ModelFileError: neither a directory nor a shipped model.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    if str(name_or_path) in SHIPPED_MODELS:
        shipped = resources.files("bilstm_nlp.models") / str(name_or_path)
        if (shipped / CONFIG_FILE).is_file():
            return Path(str(shipped))
        raise ModelFileError(f"the shipped model {name_or_path!r} is not installed", str(shipped))
    raise ModelFileError(
        f"no such model directory; shipped models are {', '.join(SHIPPED_MODELS)}", path
    )


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> Tagger | Classifier:
    """Load a model directory (or a shipped model by name).

    Raises:
        ModelFileError: missing files, bad JSON, wrong types, unknown format version, corrupt or
            mismatched weights, or a file that is not a model directory (a pickle, say).
    """
    directory = resolve_model_path(name_or_path)
    if not directory.is_dir():
        raise ModelFileError(
            "expected a model directory (config.json, *.json vocabularies, model.safetensors); "
            "pickled models (.pt, .pkl) are not loaded",
            directory,
        )
    config = _read_json(directory / CONFIG_FILE, dict)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"unsupported format_version {version!r}: "
            f"this version of bilstm-nlp reads {FORMAT_VERSION}",
            directory / CONFIG_FILE,
        )
    try:
        model_config = from_dict(
            ModelConfig, config.get("model"), str(directory / CONFIG_FILE), "model"
        )
    except ConfigError as error:
        raise ModelFileError(error.message, directory / CONFIG_FILE) from None
    for key in ("scheme", "output_scheme"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise ModelFileError(f"{key} must be a string or null", directory / CONFIG_FILE)
    if not isinstance(config.get("meta", {}), dict):
        raise ModelFileError("meta must be an object", directory / CONFIG_FILE)
    vocab_json = {}
    for part, filename in VOCAB_FILES.items():
        items = _read_json(directory / filename, list)
        if not all(isinstance(item, str) for item in items):
            raise ModelFileError("expected a JSON list of strings", directory / filename)
        vocab_json[part] = items
    trainable_words = config.get("trainable_words", -1)
    if not isinstance(trainable_words, int) or isinstance(trainable_words, bool):
        raise ModelFileError("trainable_words must be an integer", directory / CONFIG_FILE)
    try:
        vocab = Vocab.from_json(vocab_json, trainable_words)
    except ValueError as error:
        raise ModelFileError(str(error), directory) from None
    try:
        model = build_model(model_config, vocab, config.get("scheme"), config.get("output_scheme"))
    except (ConfigError, ValueError) as error:
        raise ModelFileError(f"cannot build the model: {error}", directory / CONFIG_FILE) from None
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelFileError("missing weights file", weights_path)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"not a valid safetensors file: {error}", weights_path) from None
    expected = model.state_dict()
    model.half_embeddings = state.get("embedder.word_embedding.weight", torch.zeros(0)).dtype == (
        torch.float16
    )
    for name, tensor in state.items():
        if name in expected and tensor.dtype != expected[name].dtype and tensor.is_floating_point():
            state[name] = tensor.to(expected[name].dtype)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first_line[:4])
        raise ModelFileError(f"weights do not fit the config: {detail}", weights_path) from None
    model.meta = config.get("meta", {})
    model.model_path = str(directory)
    return model.to(device).eval()


def _read_json(path: Path, kind: type) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFileError("missing file", path) from None
    except (UnicodeDecodeError, OSError) as error:
        raise ModelFileError(f"unreadable: {error}", path) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"not valid JSON: {error.msg}", path, error.lineno) from None
    if not isinstance(value, kind):
        raise ModelFileError(f"expected a JSON {'object' if kind is dict else 'list'}", path)
    return value


def export_model(
    source: str | Path,
    target: str | Path,
    *,
    max_vectors: int | None = None,
    half_embeddings: bool = True,
    dev: str | None = None,
    dev_from_train: str | None = None,
) -> dict[str, float] | None:
    """Copy a model directory into a smaller one for shipping, and say what that cost on dev.

    Args:
        source: a trained model directory.
        target: where to write the smaller copy.
        max_vectors: keep only this many pretrained-only words (the most frequent; training words
            are always kept). None keeps them all.
        half_embeddings: store word embeddings as float16.
        dev: a dev file to score the model on before and after (its figure on the copy becomes
            the copy's `meta.scores.dev`, and both go on its model card).
        dev_from_train: with `dev` a train file, score the part carved off as dev (`last:1000`).
    Returns:
        `{"before": ..., "after": ...}` dev scores when `dev` is given, else None.
    """
    from .evaluate import evaluate_file

    model = load_model(source)
    vocab = model.vocab
    dropped = 0
    if max_vectors is not None and len(vocab.words) - vocab.trainable_words > max_vectors:
        keep = vocab.trainable_words + max_vectors
        dropped = len(vocab.words) - keep
        vocab.words = Index(vocab.words.items[:keep])
        fixed = model.embedder.fixed_embedding
        pruned = torch.nn.Embedding(max_vectors, fixed.embedding_dim)
        pruned.weight.data.copy_(fixed.weight.data[:max_vectors])
        pruned.weight.requires_grad_(False)
        model.embedder.fixed_embedding = pruned
    scores = None
    if dev is not None:
        before = evaluate_file(load_model(source), dev, dev_from_train=dev_from_train).main_score
        save_model(model, target, half_embeddings=half_embeddings)
        after = evaluate_file(load_model(target), dev, dev_from_train=dev_from_train).main_score
        scores = {"before": float(before), "after": float(after)}
        model.meta = dict(model.meta)
        model.meta["scores"] = dict(model.meta.get("scores", {})) | {
            "dev": float(after),
            "dev_before_export": float(before),
        }
    target = save_model(model, target, half_embeddings=half_embeddings)
    card = Path(source) / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    note = [
        "## Shipped copy",
        "",
        f"Exported with `bilstm-nlp export {source} {target}"
        + (f" --max-vectors {max_vectors}" if max_vectors is not None else "")
        + ("" if half_embeddings else " --no-half")
        + (f" --dev {dev}" if dev else "")
        + (f" --dev-from-train {dev_from_train}" if dev_from_train else "")
        + "`: "
        + (f"{dropped:,} pretrained-only word vectors dropped, " if dropped else "")
        + ("word embeddings stored as float16, " if half_embeddings else "")
        + f"{(target / WEIGHTS_FILE).stat().st_size / 1e6:.1f} MB of weights.",
    ]
    if scores is not None:
        note.append(
            f"Dev score of the shipped copy: **{scores['after']:.2f}** "
            f"(full model: {scores['before']:.2f}; "
            f"export cost {scores['before'] - scores['after']:+.2f})."
        )
    (target / "README.md").write_text(text.rstrip("\n") + "\n\n" + "\n".join(note) + "\n")
    return scores


def find_models(root: str | Path, depth: int = 3) -> list[Path]:
    """Model directories (holding a config.json with a format_version) under `root`."""
    root = Path(root)
    found = [
        config.parent
        for level in range(1, depth + 1)
        for config in sorted(root.glob("/".join(["*"] * level) + "/config.json"))
    ]
    models = []
    for directory in found:
        try:
            config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and "format_version" in config:
            models.append(directory)
    return models


def describe_model(directory: str | Path) -> dict[str, Any]:
    """Name, task, dev score and size of a model directory, read from its config.json."""
    directory = Path(directory)
    config = _read_json(directory / CONFIG_FILE, dict)
    meta = config.get("meta", {})
    scores = meta.get("scores", {})
    weights = directory / WEIGHTS_FILE
    return {
        "path": str(directory),
        "task": meta.get("task", config.get("kind")),
        # A classifier's head is its pooling; `model.head` only means something for taggers.
        "head": (
            config.get("model", {}).get("head")
            if config.get("model", {}).get("task", "tagger") == "tagger"
            else f"{config.get('model', {}).get('pooling', '?')}-pool"
        ),
        "dev": scores.get("dev"),
        "size_mb": round(weights.stat().st_size / 1e6, 1) if weights.is_file() else None,
        "trained_on": meta.get("provenance", {}).get("config", {}).get("data", {}).get("train"),
    }
