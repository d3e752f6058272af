"""Model directories: `config.json`, vocabularies as JSON, `model.safetensors`, a README model card.

Loading parses JSON, checks `format_version`, builds the modules from the config, then loads the
weights with `load_state_dict(strict=True)`. No pickle anywhere: a model file cannot run code.
Every failure is a `ModelFileError` naming the file and the problem.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import stat
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from ._version import __version__
from .config import INPUT_FORMATS, ModelConfig, from_dict, short_json
from .errors import ConfigError, ModelFileError
from .nn.model import Classifier, Tagger, build_model
from .nn.vocab import Index, Vocab
from .text.schemes import SCHEMES

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILES = {"words": "words.json", "chars": "chars.json", "labels": "labels.json"}
SHIPPED_MODELS = ("ner", "pos", "chunk", "sentiment")

# Bounds on what a model directory may hold, so that a hostile one costs no more than reading
# these many bytes: no JSON file is read past its bound, and the weights are checked against the
# config before anything is allocated. The shipped models use a small fraction of each.
CONFIG_MAX_BYTES = 4 * 2**20
VOCAB_MAX_BYTES = 512 * 2**20
MAX_LABELS = 1_000
"""At most this many tags or classes: the CRF and the scheme checks grow with its square."""


def save_model(
    model: Tagger | Classifier,
    directory: str | Path,
    meta: dict[str, Any] | None = None,
    half_embeddings: bool | None = None,
) -> Path:
    """Write `model` as a model directory (created if needed; files replaced atomically, each with
    the permissions the umask gives).

    Args:
        model: the model to save.
        directory: target directory.
        meta: JSON-able extras kept in config.json: reader settings, provenance, scores.
        half_embeddings: store the word embeddings as float16 (halves the biggest tensors);
            None keeps what the model was loaded with.
    Raises:
        ModelFileError: `directory` is a file or cannot be created.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ModelFileError("exists and is not a folder; give a model folder", directory) from None
    except OSError as error:
        raise ModelFileError(f"cannot create the folder: {error.strerror}", directory) from None
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
    # Serialised in memory and written by Python, so the file gets the same permissions as the
    # JSON files beside it (the umask's); `save_file` created it 0600.
    weights = save(state)
    _atomic_write(directory / WEIGHTS_FILE, lambda p: p.write_bytes(weights))
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

    Only regular files of bounded size are read (`CONFIG_MAX_BYTES`, `VOCAB_MAX_BYTES`), every
    config value is checked for type and range, and the stored tensor shapes are compared with
    the config's before the model is allocated.

    Raises:
        ModelFileError: missing files, bad JSON, wrong types or values, unknown format version,
            corrupt or mismatched weights, a device, pipe or oversized file in place of one, or a
            file that is not a model directory (a pickle, say).
    """
    directory = resolve_model_path(name_or_path)
    if not directory.is_dir():
        raise ModelFileError(
            "expected a model directory (config.json, *.json vocabularies, model.safetensors); "
            "pickled models (.pt, .pkl) are not loaded",
            directory,
        )
    config_path = directory / CONFIG_FILE
    settings = _check_config(_read_json(config_path, dict, CONFIG_MAX_BYTES), config_path)
    vocab_json = {}
    for part, filename in VOCAB_FILES.items():
        items = _read_json(directory / filename, list, VOCAB_MAX_BYTES)
        if not all(isinstance(item, str) for item in items):
            raise ModelFileError("expected a JSON list of strings", directory / filename)
        vocab_json[part] = items
    if len(vocab_json["labels"]) > MAX_LABELS:
        raise ModelFileError(
            f"{len(vocab_json['labels']):,} labels; a model has at most {MAX_LABELS:,}",
            directory / VOCAB_FILES["labels"],
        )
    try:
        vocab = Vocab.from_json(vocab_json, settings.trainable_words)
    except ValueError as error:
        raise ModelFileError(str(error), directory) from None
    weights_path = directory / WEIGHTS_FILE
    _check_regular_file(weights_path, "missing weights file")
    # The shapes the config asks for, from a model built on the meta device (no memory), must be
    # those stored before the real model is built: a config whose sizes are in range but do not
    # fit the weights would otherwise allocate gigabytes first.
    build = (settings.model, vocab, settings.scheme, settings.output_scheme)
    try:
        with torch.device("meta"):
            skeleton = build_model(*build)
    except (ConfigError, ValueError) as error:
        raise ModelFileError(f"cannot build the model: {error}", config_path) from None
    _check_stored_shapes(weights_path, skeleton.state_dict())
    model = build_model(*build)
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
    model.meta = settings.meta
    model.model_path = str(directory)
    return model.to(device).eval()


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What `config.json` says, checked."""

    model: ModelConfig
    scheme: str | None
    output_scheme: str | None
    trainable_words: int
    meta: dict[str, Any]


def _check_config(config: dict[str, Any], path: Path) -> _Settings:
    """Every value `config.json` holds, checked for type and range.

    Raises:
        ModelFileError: naming `path` and the key.
    """
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"unsupported format_version {short_json(version)}: "
            f"this version of bilstm-nlp reads {FORMAT_VERSION}",
            path,
        )
    try:
        model_config = from_dict(ModelConfig, config.get("model"), str(path), "model")
    except ConfigError as error:
        raise ModelFileError(error.message, path) from None
    kind = config.get("kind", model_config.task)
    if kind not in ("tagger", "classifier") or kind != model_config.task:
        raise ModelFileError(
            f"kind must be tagger or classifier, as model.task ({model_config.task}), "
            f"got {short_json(kind)}",
            path,
        )
    for key in ("scheme", "output_scheme"):
        if config.get(key) is not None and config[key] not in SCHEMES:
            raise ModelFileError(
                f"{key} must be one of {', '.join(SCHEMES)} or null, got {short_json(config[key])}",
                path,
            )
    trainable_words = config.get("trainable_words", -1)
    if not isinstance(trainable_words, int) or isinstance(trainable_words, bool):
        raise ModelFileError("trainable_words must be an integer", path)
    return _Settings(
        model_config,
        config.get("scheme"),
        config.get("output_scheme"),
        trainable_words,
        _check_meta(config.get("meta", {}), path),
    )


def _check_meta(meta: Any, path: Path) -> dict[str, Any]:
    """`meta` as an object whose parts that other code reads have the types it expects."""
    if not isinstance(meta, dict):
        raise ModelFileError("meta must be an object", path)
    for key in ("reader", "scores", "provenance"):
        if not isinstance(meta.get(key, {}), dict):
            raise ModelFileError(f"meta.{key} must be an object, got {short_json(meta[key])}", path)
    if not isinstance(meta.get("task", ""), str):
        raise ModelFileError(f"meta.task must be a string, got {short_json(meta['task'])}", path)
    reader = meta.get("reader", {})
    choices = {
        "input_format": INPUT_FORMATS,
        "tag_field": ("upos", "xpos"),
        "file_scheme": SCHEMES,
        "sst_labels": ("sst2", "sst5"),
    }
    for key, allowed in choices.items():
        if reader.get(key) is not None and reader[key] not in allowed:
            raise ModelFileError(
                f"meta.reader.{key} must be one of {', '.join(allowed)} or null, "
                f"got {short_json(reader[key])}",
                path,
            )
    for key in ("text_field", "label_field"):
        if not isinstance(reader.get(key, ""), str):
            raise ModelFileError(f"meta.reader.{key} must be a string", path)
    column = reader.get("label_column")
    if column is not None and (
        not isinstance(column, int) or isinstance(column, bool) or abs(column) > 1000
    ):
        raise ModelFileError(
            f"meta.reader.label_column must be an integer in [-1000, 1000] or null, "
            f"got {short_json(column)}",
            path,
        )
    dev = meta.get("scores", {}).get("dev")
    if dev is not None and (
        not isinstance(dev, int | float) or isinstance(dev, bool) or not math.isfinite(dev)
    ):
        raise ModelFileError(
            f"meta.scores.dev must be a number or null, got {short_json(dev)}", path
        )
    return meta


def _check_stored_shapes(path: Path, expected: dict[str, torch.Tensor]) -> None:
    """The weights file holds exactly the tensors of `expected`, shape for shape (header only)."""
    try:
        with safe_open(str(path), framework="pt") as weights:
            names = list(weights.keys())
            stored = {name: tuple(weights.get_slice(name).get_shape()) for name in names}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"not a valid safetensors file: {error}", path) from None
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong = [
        f"{name} is {list(stored[name])}, the config needs {list(tensor.shape)}"
        for name, tensor in expected.items()
        if name in stored and stored[name] != tuple(tensor.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensor(s) {', '.join(missing[:4])}")
    if unexpected:
        problems.append(f"unexpected tensor(s) {', '.join(unexpected[:4])}")
    problems += wrong[:2]
    if problems:
        raise ModelFileError(f"weights do not fit the config: {'; '.join(problems)}", path)


def _check_regular_file(path: Path, missing: str = "missing file") -> os.stat_result:
    """The file's status; a `ModelFileError` unless it is a regular file (after symlinks)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ModelFileError(missing, path) from None
    except OSError as error:
        raise ModelFileError(f"unreadable: {error.strerror}", path) from None
    if not stat.S_ISREG(info.st_mode):
        # A FIFO would block the read forever, /dev/zero would never end it.
        raise ModelFileError("not a regular file (a folder, device or pipe)", path)
    return info


def _read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes."""
    info = _check_regular_file(path)
    if info.st_size > limit:
        raise ModelFileError(f"too large: {info.st_size:,} bytes, at most {limit:,}", path)
    try:
        # Non-blocking, and checked again once open: the path may have changed since the stat.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ModelFileError("not a regular file (a folder, device or pipe)", path)
            data = handle.read(limit + 1)
    except OSError as error:
        raise ModelFileError(f"unreadable: {error.strerror}", path) from None
    if len(data) > limit:
        raise ModelFileError(f"too large: more than {limit:,} bytes", path)
    return data


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _read_json(path: Path, kind: type, limit: int = CONFIG_MAX_BYTES) -> Any:
    data = _read_bounded(path, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ModelFileError("not UTF-8", path, line) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"not valid JSON: {error.msg}", path, error.lineno) from None
    except _NotJson as error:
        raise ModelFileError(f"not valid JSON: {error}", path) from None
    except RecursionError:
        raise ModelFileError("not valid JSON: nested too deeply", path) from None
    except ValueError:  # Python's guard against quadratic-time conversion of huge integers
        raise ModelFileError("not valid JSON: a number of over 4,300 digits", path) from None
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
    recipe_dev: float | None = None,
    recipe_command: str | None = None,
) -> dict[str, float] | None:
    """Copy a model directory into a smaller one for shipping, and say what that cost on dev.

    A model trained on train + dev (`data.train_with_dev`) has no held-out dev figure: its score
    on `dev` only checks the export (kept as `meta.scores.dev_trained_on`), and the figure that
    stands for it is its recipe's, measured by a run on train alone with the same settings and
    epoch count (`recipe_dev`, with that run's `recipe_command`).

    Args:
        source: a trained model directory.
        target: where to write the smaller copy.
        max_vectors: keep only this many pretrained-only words (the most frequent; training words
            are always kept). None keeps them all.
        half_embeddings: store word embeddings as float16.
        dev: a dev file to score the model on before and after (its figure on the copy becomes
            the copy's `meta.scores.dev`, and both go on its model card).
        dev_from_train: with `dev` a train file, score the part carved off as dev (`last:1000`).
        recipe_dev: the dev figure of the recipe (train+dev models only).
        recipe_command: the command of the train-only run that measured `recipe_dev`.
    Returns:
        `{"before": ..., "after": ...}` dev scores when `dev` is given, else None.
    Raises:
        ConfigError: `max_vectors` is negative, or a recipe figure is given for a model that was
            not trained on dev (or is missing for one given `dev`).
        ModelFileError: `source` is no loadable model, or `target` is a file.
    """
    from .evaluation.evaluate import evaluate_file

    if max_vectors is not None and (
        isinstance(max_vectors, bool) or not isinstance(max_vectors, int) or max_vectors < 0
    ):
        raise ConfigError(f"--max-vectors must be 0 or more, got {max_vectors!r}")
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ModelFileError("exists and is not a folder; give a folder to export to", target)
    model = load_model(source)
    trained_on_dev = bool(_dig(model.meta, "provenance", "config", "data", "train_with_dev"))
    if (recipe_dev is not None or recipe_command is not None) and not trained_on_dev:
        raise ConfigError(
            "--recipe-dev is for models trained on train + dev; this one has a dev figure of "
            "its own"
        )
    if recipe_dev is not None and (not math.isfinite(recipe_dev) or not 0 <= recipe_dev <= 100):
        raise ConfigError(f"--recipe-dev must be a figure in [0, 100], got {recipe_dev!r}")
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
        # A model trained on dev scores near 100 there: that only checks the export.
        prefix = "dev_trained_on" if trained_on_dev else "dev"
        model.meta["scores"] = dict(model.meta.get("scores", {})) | {
            prefix: float(after),
            f"{prefix}_before_export": float(before),
        }
    if trained_on_dev:
        model.meta = dict(model.meta)
        model.meta["scores"] = dict(model.meta.get("scores", {})) | {
            "dev": None,
            "recipe_dev": recipe_dev,
            "recipe_command": recipe_command,
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
        + (f" --recipe-dev {recipe_dev}" if recipe_dev is not None else "")
        + (f" --recipe-command {shlex.quote(recipe_command)}" if recipe_command else "")
        + "`: "
        + (f"{dropped:,} pretrained-only word vectors dropped, " if dropped else "")
        + ("word embeddings stored as float16, " if half_embeddings else "")
        + f"{(target / WEIGHTS_FILE).stat().st_size / 1e6:.1f} MB of weights.",
    ]
    if scores is not None and not trained_on_dev:
        note.append(
            f"Dev score of the shipped copy: **{scores['after']:.2f}** "
            f"(full model: {scores['before']:.2f}; "
            f"export cost {scores['before'] - scores['after']:+.2f})."
        )
    if trained_on_dev:
        if scores is not None:
            note.append(
                f"On dev, which it was trained on: {scores['after']:.2f} (full model: "
                f"{scores['before']:.2f}); this checks the export, it is no held-out figure."
            )
        if recipe_dev is not None:
            note.append(
                "Dev figure of its recipe (the same settings trained on train alone"
                + (f": `{recipe_command}`" if recipe_command else "")
                + f"): **{recipe_dev:.2f}**."
            )
    (target / "README.md").write_text(text.rstrip("\n") + "\n\n" + "\n".join(note) + "\n")
    return scores


def find_models(root: str | Path, depth: int = 3) -> list[Path]:
    """Model directories under `root`: a config.json with a format_version, or, when the
    config.json cannot be read as a JSON object, beside our vocabulary files. Broken ones are
    included (`describe_model` says what is wrong); other tools' folders (a Hugging Face model's
    config.json and model.safetensors) are not."""
    root = Path(root)
    found = [
        config.parent
        for level in range(1, depth + 1)
        for config in sorted(root.glob("/".join(["*"] * level) + "/" + CONFIG_FILE))
    ]
    models = []
    for directory in found:
        try:
            config = _read_json(directory / CONFIG_FILE, dict)
        except ModelFileError:
            ours = all((directory / name).exists() for name in VOCAB_FILES.values())
            if ours:
                models.append(directory)
            continue
        if "format_version" in config:
            models.append(directory)
    return models


def describe_model(directory: str | Path) -> dict[str, Any]:
    """Name, task, dev score and size of a model directory, read from its config.json.

    Raises:
        ModelFileError: the config.json is missing, unreadable or malformed (as `load_model`
            would find it; the weights are not read).
    """
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    settings = _check_config(_read_json(config_path, dict), config_path)
    meta, model = settings.meta, settings.model
    weights = directory / WEIGHTS_FILE
    return {
        "path": str(directory),
        "task": meta.get("task", model.task),
        # A classifier's head is its pooling; `model.head` only means something for taggers.
        "head": model.head if model.task == "tagger" else f"{model.pooling}-pool",
        **_dev_figure(meta),
        "size_mb": round(weights.stat().st_size / 1e6, 1) if weights.is_file() else None,
        "trained_on": _dig(meta, "provenance", "config", "data", "train"),
    }


def _dev_figure(meta: dict[str, Any]) -> dict[str, Any]:
    """The dev figure that stands for a model, and what it is."""
    scores = meta.get("scores", {})
    if _dig(meta, "provenance", "config", "data", "train_with_dev"):
        recipe = scores.get("recipe_dev")
        usable = isinstance(recipe, int | float) and not isinstance(recipe, bool)
        return {
            "dev": float(recipe) if usable and math.isfinite(recipe) else None,
            "figure": "recipe dev (trained on train+dev)",
            "figure_command": scores.get("recipe_command"),
        }
    dev = scores.get("dev")
    return {
        "dev": dev,
        "figure": "dev" if dev is not None else None,
        "figure_command": _dig(meta, "provenance", "command"),
    }


def _dig(value: Any, *keys: str) -> Any:
    """`value[k1][k2]...`, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
