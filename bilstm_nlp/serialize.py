"""Model directories: `config.json`, vocabularies as JSON, `model.safetensors`, a README model card.

Loading parses JSON, checks `format_version`, builds the modules from the config, then loads the
weights with `load_state_dict(strict=True)`. No pickle anywhere: a model file cannot run code.
Every failure is a `ModelFileError` naming the file and the problem.

Imports no torch itself: an ONNX model folder loads without it (`bilstm_nlp.runtime`), and a torch
folder imports it when loaded, with one clear error where it is not installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError, safe_open

from ._version import __version__
from .config import ModelConfig, from_dict, short_json
from .errors import ConfigError, ModelFileError, require_torch
from .nn.meta import FORMAT_VERSION, ModelMeta
from .nn.vocab import Index, Vocab
from .text.schemes import allowed_transitions

if TYPE_CHECKING:
    import torch

    from .nn.model import Classifier, Tagger

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILES = {"words": "words.json", "chars": "chars.json", "labels": "labels.json"}
HALF_TENSORS = ("embedder.word_embedding.weight", "embedder.fixed_embedding.weight")
"""The tensors an exported model may store as float16 (`ModelMeta.half_embeddings`), with each
further member's trained word vectors in an ensemble classifier (`is_half_tensor`)."""


def is_half_tensor(name: str) -> bool:
    """Whether the tensor `name` is stored as float16 in a model with `half_embeddings`."""
    return name in HALF_TENSORS or (
        name.startswith("other_members.") and name.endswith(".embedder.word_embedding.weight")
    )


SHIPPED_MODELS = ("ner", "pos", "chunk", "sentiment")

# Bounds on what a model directory may hold, so that a hostile one costs no more than reading
# these many bytes: no JSON file is read past its bound, and the weights are checked against the
# config before anything is allocated. The shipped models use a small fraction of each.
CONFIG_MAX_BYTES = 4 * 2**20
VOCAB_MAX_BYTES = 512 * 2**20
VOCAB_MAX_STRINGS = 5_000_000
"""At most this many strings in a vocabulary file, counted before it is parsed: a string of
the file costs as little as 5 bytes there and about 60 in memory, so 512 MiB of short strings
would cost gigabytes. The largest common embeddings hold about 2 million words."""
MAX_LABELS = 1_000
"""At most this many tags or classes: the CRF and the scheme checks grow with its square."""


def save_model(
    model: Tagger | Classifier, directory: str | Path, meta: ModelMeta | None = None
) -> Path:
    """Write `model` as a model directory (created if needed; files replaced atomically, each with
    the permissions the umask gives). An ONNX model's files are copied from its folder.

    Args:
        model: the model to save.
        directory: target directory.
        meta: the metadata to write in its place (a training run's scores, an export's storage
            choice); None writes `model.meta`.
    Raises:
        ModelFileError: `directory` is a file or cannot be created.
    """
    if getattr(model, "backend", "torch") == "onnx":
        if meta is not None:
            raise ConfigError("an ONNX model's metadata is fixed at export: save it as it is")
        return _copy_onnx_folder(model, Path(directory))
    from safetensors.torch import save

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ModelFileError("exists and is not a folder; give a model folder", directory) from None
    except OSError as error:
        raise ModelFileError(f"cannot create the folder: {error.strerror}", directory) from None
    meta = meta or model.meta
    config = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": model.config.task,
        "scheme": meta.scheme,
        "output_scheme": meta.tags_in if meta.scheme else meta.output_scheme,
        "trainable_words": model.vocab.trainable_words,
        "model": dataclasses.asdict(model.config),
        "meta": meta.to_json(),
    }
    if meta.int8:
        config["quantize"] = "int8"
    state = {
        name: tensor.detach().cpu().contiguous()
        for name, tensor in model.float_state_dict().items()
    }
    if meta.half_embeddings:
        for key in state:
            if is_half_tensor(key):
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


# What `train` writes beside its model (`training.loop`, `training.checkpoint`): a folder holding
# one is a training run, whose model a copy written over it would replace (its log and checkpoint
# then describing another model), and which a new run may train into again.
TRAINING_LOG = "train_log.jsonl"
TRAINING_LOCK = ".train.lock"
TRAINING_CHECKPOINT = "checkpoint"


def _copy_onnx_folder(model: Any, directory: Path) -> Path:
    """Copy an ONNX model's files (`files`) and its card from the folder it was loaded from into
    `directory` (created if needed). Nothing else of that folder is copied: a card or other file
    that links outside it would carry that file along.

    Raises:
        ModelFileError: it was loaded from no folder, a file is gone, or the card is a link.
    """
    if model.meta.source is None:
        raise ModelFileError("this ONNX model was loaded from no folder; nothing to copy")
    source = Path(model.meta.source)
    card = read_card(source)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ModelFileError("exists and is not a folder; give a model folder", directory) from None
    for name in model.files:
        try:
            shutil.copyfile(source / name, directory / name)
        except OSError as error:
            raise ModelFileError(f"cannot copy: {error.strerror}", source / name) from None
    if card:
        (directory / MODEL_CARD).write_text(card, encoding="utf-8")
    return directory


def training_run_mark(folder: Path) -> str | None:
    """The first file in `folder` that marks a training run, or None."""
    for name in (TRAINING_LOG, TRAINING_LOCK, TRAINING_CHECKPOINT):
        if (folder / name).exists():
            return name
    return None


def folder_listing(folder: Path) -> str:
    """The first few names in `folder`, for an error saying what writing there would replace;
    empty for an empty folder."""
    held = sorted(p.name for p in folder.iterdir())
    return ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")


def check_copy_target(target: str | Path, sources: Sequence[str | Path]) -> Path:
    """Refuse a folder to write a model made from `sources` into (`export`, `ensemble`) where
    writing would lose something: a source itself, a training run's folder, a folder of other
    files. A folder holding an earlier export is replaced, as shipping into `models/` again does.

    Raises:
        ModelFileError: `target` is a file, one of `sources`, a training run's folder, or a
            folder holding files but no model.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ModelFileError("exists and is not a folder; give a folder to write to", target)
    if not target.is_dir():
        return target
    for source in sources:
        try:
            folder = resolve_model_path(source)
        except ModelFileError:
            continue  # no model: loading it says so
        if folder.is_dir() and os.path.samefile(folder, target):
            raise ModelFileError(
                f"is the input model {str(source)!r}: writing there would replace it; give "
                "another folder",
                target,
            )
    mark = training_run_mark(target)
    if mark is not None:
        raise ModelFileError(
            f"holds a training run ({mark}): writing there would replace its model; give "
            "another folder",
            target,
        )
    listing = folder_listing(target)
    if listing and not (target / CONFIG_FILE).exists():
        raise ModelFileError(
            f"holds files but no model ({listing}): writing there would replace them; give a "
            "new or empty folder",
            target,
        )
    return target


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A fresh folder beside `target` to write a model into, whose files replace `target`'s when
    the block ends: a write or check that fails leaves `target` as it was (an earlier export, or
    nothing), never a half-written model that loads. Other files of `target` (a shipped model's
    `train.json`) stay.

    Raises:
        ModelFileError: the folder beside `target` cannot be made.
    """
    target = Path(os.path.abspath(target))
    stage = target.with_name(f".{target.name}.writing-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(stage, ignore_errors=True)  # a killed run's, of a reused pid
        stage.mkdir()
    except OSError as error:
        raise ModelFileError(f"cannot write: {error.strerror or error}", target) from None
    try:
        yield stage
        target.mkdir(exist_ok=True)
        for written in sorted(stage.iterdir()):
            os.replace(written, target / written.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


MODEL_CARD = "README.md"
CARD_MAX_BYTES = CONFIG_MAX_BYTES


def read_card(folder: Path) -> str:
    """A model folder's card (`README.md`), "" where it has none. Only a regular file in the
    folder itself is read: a card that links elsewhere would copy that file into the export.

    Raises:
        ModelFileError: the card is a symbolic link, not a regular file, too large or not UTF-8.
    """
    card = folder / MODEL_CARD
    if card.is_symlink():
        raise ModelFileError(
            "is a symbolic link: a card is copied with the model, so it must be a file of the "
            "folder's own (copy its text in)",
            card,
        )
    if not card.exists():
        return ""
    try:
        return _read_bounded(card, CARD_MAX_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError("not UTF-8", card) from None


def _atomic_write(path: Path, write) -> None:
    # A crash mid-save leaves the previous file, never half of a new one.
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    os.replace(temporary, path)


def _shipped_root() -> Any:
    """The folder of the shipped models; None where they are not installed (bilstm-nlp-runtime
    leaves them out: they are torch folders)."""
    try:
        return resources.files("bilstm_nlp.models")
    except ModuleNotFoundError:
        return None


def shipped_models() -> dict[str, Path]:
    """The shipped models that are installed, by name."""
    root = _shipped_root()
    if root is None:
        return {}
    found = {}
    for name in SHIPPED_MODELS:
        if (root / name / CONFIG_FILE).is_file():
            found[name] = Path(str(root / name))
    return found


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model directory from a path or a shipped model's name (`ner`, `pos`, `chunk`, `sentiment`).

    Raises:
        ModelFileError: neither a directory nor a shipped model.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    if str(name_or_path) in SHIPPED_MODELS:
        if _shipped_root() is None:
            raise ModelFileError(
                f"the shipped model {name_or_path!r} is a torch model folder, not installed with "
                f"bilstm-nlp-runtime; export it where bilstm-nlp is installed (bilstm-nlp export "
                f"{name_or_path} {name_or_path}-onnx --format onnx) and give that folder",
                str(name_or_path),
            )
        shipped = _shipped_root() / str(name_or_path)
        if (shipped / CONFIG_FILE).is_file():
            return Path(str(shipped))
        raise ModelFileError(f"the shipped model {name_or_path!r} is not installed", str(shipped))
    raise ModelFileError(
        f"no such model directory; shipped models are {', '.join(SHIPPED_MODELS)}", path
    )


def load_model(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    quantized: bool | None = None,
    threads: int | None = None,
) -> Tagger | Classifier:
    """Load a model directory (or a shipped model by name).

    A folder `bilstm-nlp export --format onnx` wrote (config.json says `"backend": "onnx"`) gives
    an ONNX model (`bilstm_nlp.runtime.backend`), which needs no torch; any other a torch model.
    A folder exported with `--quantize int8` (`"quantize": "int8"` in its config) loads with int8
    LSTMs and linear layers (`nn.quantize`) unless `quantized` is False: the float weights, to
    train further or export. `quantized=True` quantizes any torch folder; an ONNX folder's
    precision is fixed at export, and asking for the other one is a `ConfigError`. `threads`
    sets an ONNX folder's onnxruntime intra-op threads (default: onnxruntime's, one per physical
    core); torch's are process-wide (`torch.set_num_threads`), so torch folders ignore it.

    Only regular files of bounded size are read (`CONFIG_MAX_BYTES`, `VOCAB_MAX_BYTES`), every
    config value is checked for type and range, and the stored tensor shapes are compared with
    the config's before the model is allocated.

    Raises:
        ModelFileError: missing files, bad JSON, wrong types or values, unknown format version,
            corrupt or mismatched weights, a device, pipe or oversized file in place of one, or a
            file that is not a model directory (a pickle, say).
        ConfigError: a torch model folder where torch is not installed, or an ONNX one where
            onnxruntime is not; `threads` below 1.
    """
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"threads must be at least 1, got {threads!r}")
    directory = resolve_model_path(name_or_path)
    if not directory.is_dir():
        raise ModelFileError(
            "expected a model directory (config.json, *.json vocabularies, model.safetensors); "
            "pickled models (.pt, .pkl) are not loaded",
            directory,
        )
    if is_onnx_folder(directory):
        if quantized is not None and quantized != (onnx_int8 := _onnx_is_int8(directory)):
            # The graph was quantized (or not) at export: loading cannot change it, and silently
            # running the other precision would mislead a comparison.
            raise ConfigError(
                f"this ONNX folder is {'int8' if onnx_int8 else 'float32'}, fixed at export: "
                + (
                    "export again without --quantize"
                    if onnx_int8
                    else "export with --quantize int8"
                )
                + " for the other precision",
                directory,
            )
        return _load_onnx_directory(directory, threads)
    model = _load_directory(directory, str(directory)).to(device).eval()
    if quantized or (quantized is None and model.meta.int8):
        import torch  # there: _load_directory needed it

        if torch.device(device).type != "cpu":
            raise ConfigError("int8 models run on the CPU; load the float weights for a GPU")
        model.quantize_int8()
    return model


def _onnx_is_int8(directory: Path) -> bool:
    onnx = _read_json(directory / CONFIG_FILE, dict, CONFIG_MAX_BYTES).get("onnx")
    return isinstance(onnx, dict) and onnx.get("quantize") == "int8"


def is_onnx_folder(directory: str | Path) -> bool:
    """True for a folder `bilstm-nlp export --format onnx` wrote (its config.json says
    `"backend": "onnx"`), False for a torch model folder.

    Raises:
        ModelFileError: the config.json is missing or not a JSON object.
    """
    config = _read_json(Path(directory) / CONFIG_FILE, dict, CONFIG_MAX_BYTES)
    return config.get("backend") == "onnx"


def refuse_onnx_source(directory: str | Path) -> None:
    """Refuse an ONNX folder as the source of an export or ensemble: it holds a graph, not the
    weights these are made from.

    Raises:
        ConfigError: `directory` is an ONNX model folder.
    """
    if is_onnx_folder(directory):
        raise ConfigError(
            "is an ONNX model folder, itself an export: give the torch model folder it was "
            "exported from",
            directory,
        )


MODEL_FILES = (CONFIG_FILE, *VOCAB_FILES.values(), WEIGHTS_FILE)
"""The files of a model directory, all that `load_model_files` needs."""


def load_model_files(files: dict[str, bytes]) -> Tagger | Classifier:
    """Load a model from the bytes of its directory's files (`MODEL_FILES`), as a spaCy
    pipeline's `to_bytes` carries them; checked exactly as `load_model` checks a folder. The
    model remembers no source folder.

    Raises:
        ModelFileError: a file is missing or broken (named as in a folder).
    """
    with tempfile.TemporaryDirectory() as folder:
        for name in MODEL_FILES:  # only known names: the bytes cannot choose where to write
            if name not in files:
                raise ModelFileError("missing file", name)
            (Path(folder) / name).write_bytes(files[name])
        model = _load_directory(Path(folder), None).eval()
    if model.meta.int8:
        model.quantize_int8()
    return model


def _load_onnx_directory(directory: Path, threads: int | None = None) -> Any:
    """An ONNX model folder (`bilstm-nlp export --format onnx`): the same config and vocabulary
    checks as a torch folder, then the graph and the CRF arrays (`bilstm_nlp.runtime`)."""
    from .runtime.backend import (
        OnnxClassifier,
        OnnxTagger,
        check_graph,
        read_crf,
        session_for,
    )

    config_path = directory / CONFIG_FILE
    raw = _read_json(config_path, dict, CONFIG_MAX_BYTES)
    settings = _check_config(raw, config_path)
    vocab = _read_vocab(directory, settings)
    onnx = raw.get("onnx")
    if not isinstance(onnx, dict) or not all(
        _is_file_name(onnx.get(key)) for key in ("file", "output")
    ):
        raise ModelFileError('"onnx" must say the graph "file" and its "output"', config_path)
    if onnx.get("quantize") not in (None, "int8"):
        raise ModelFileError(
            f'"onnx" "quantize" must be int8 or absent, got {short_json(onnx["quantize"])}',
            config_path,
        )
    graph_path = directory / onnx["file"]
    _check_regular_file(graph_path, "missing ONNX graph")
    meta = dataclasses.replace(settings.meta, source=str(directory))
    session = session_for(graph_path, threads)
    model: OnnxClassifier | OnnxTagger
    files = (CONFIG_FILE, *VOCAB_FILES.values(), onnx["file"])
    if settings.model.task == "classifier":
        model = OnnxClassifier(session, settings.model, vocab, meta, files)
    else:
        crf_name = onnx.get("crf")
        if not _is_file_name(crf_name):
            raise ModelFileError('"onnx" must name the "crf" arrays of a tagger', config_path)
        _check_regular_file(directory / crf_name, "missing CRF arrays")
        crf = read_crf(directory / crf_name, vocab.labels.items, meta.scheme)
        model = OnnxTagger(session, settings.model, vocab, meta, (*files, crf_name), crf)
    check_graph(model, graph_path)
    return model


def _is_file_name(name: Any) -> bool:
    """A plain file name in the folder: no path, no NUL byte (which the OS would refuse)."""
    return isinstance(name, str) and name not in ("", ".", "..") and not {"/", "\0"} & set(name)


def _read_vocab(directory: Path, settings: _Settings) -> Vocab:
    """The vocabularies, each string once, the labels fitting the config's scheme.

    Raises:
        ModelFileError: naming the vocabulary file (or config.json for `trainable_words`).
    """
    indexes = {}
    for part, filename in VOCAB_FILES.items():
        path = directory / filename
        items = _read_json(path, list, VOCAB_MAX_BYTES, max_strings=VOCAB_MAX_STRINGS)
        if not {type(item) for item in items} <= {str}:
            raise ModelFileError("expected a JSON list of strings", path)
        if part == "labels" and len(items) > MAX_LABELS:
            raise ModelFileError(f"{len(items):,} labels; a model has at most {MAX_LABELS:,}", path)
        try:
            indexes[part] = Index(items)
        except ValueError:
            twice = next(item for item, count in Counter(items).items() if count > 1)
            raise ModelFileError(
                f"{short_json(twice)} is listed twice: each string has one id", path
            ) from None
    try:
        # Raises for a tag that fits no scheme, or a scheme the tags do not spell.
        allowed_transitions(settings.meta.scheme, indexes["labels"].items)
    except (ValueError, ConfigError) as error:
        raise ModelFileError(
            f"{error} (config.json says scheme {settings.meta.scheme})",
            directory / VOCAB_FILES["labels"],
        ) from None
    try:
        return Vocab(
            indexes["words"], indexes["chars"], indexes["labels"], settings.trainable_words
        )
    except ValueError as error:
        raise ModelFileError(str(error), directory / CONFIG_FILE) from None


def _load_directory(directory: Path, source: str | None) -> Tagger | Classifier:
    require_torch(
        f"{directory} is a torch model folder; loading it",
        "or export it to ONNX where torch is (bilstm-nlp export MODEL OUT --format onnx)",
    )
    from safetensors.torch import load_file

    from .nn.model import build_for_weights, tensor_shapes

    config_path = directory / CONFIG_FILE
    settings = _check_config(_read_json(config_path, dict, CONFIG_MAX_BYTES), config_path)
    vocab = _read_vocab(directory, settings)
    weights_path = directory / WEIGHTS_FILE
    _check_regular_file(weights_path, "missing weights file")
    # The shapes the config asks for, from a model built on the meta device (no memory), must be
    # those stored before the real model is built: a config whose sizes are in range but do not
    # fit the weights would otherwise allocate gigabytes first.
    try:
        shapes = tensor_shapes(settings.model, vocab, settings.meta)
    except (ConfigError, ValueError) as error:
        raise ModelFileError(f"cannot build the model: {error}", config_path) from None
    stored_dtypes = _check_stored_shapes(weights_path, shapes)
    _check_memory(shapes, weights_path)
    half = stored_dtypes.get(HALF_TENSORS[0]) == "F16"
    meta = dataclasses.replace(settings.meta, half_embeddings=half, source=source)
    model = build_for_weights(settings.model, vocab, meta)
    expected = model.state_dict()
    _check_stored_dtypes(weights_path, stored_dtypes, expected)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"not a valid safetensors file: {error}", weights_path) from None
    for name, tensor in state.items():
        if name in expected and tensor.dtype != expected[name].dtype and tensor.is_floating_point():
            state[name] = tensor.to(expected[name].dtype)
    buffers = {name for name, _ in model.named_buffers()} & set(expected)
    _check_stored_values(weights_path, state, {name: expected[name] for name in buffers}, meta)
    try:
        # Copied into the tensors built, not assigned: the LSTM keeps its weights in the
        # layout it built them in (assigned ones gave emissions that differ in the last bits).
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first_line[:4])
        raise ModelFileError(f"weights do not fit the config: {detail}", weights_path) from None
    return model


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What `config.json` says, checked."""

    model: ModelConfig
    trainable_words: int
    meta: ModelMeta


def _check_config(config: dict[str, Any], path: Path) -> _Settings:
    """Every value `config.json` holds, checked for type and range.

    Raises:
        ModelFileError: naming `path` and the key.
    """
    version = config.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:  # true and 1.0 equal 1
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
    trainable_words = config.get("trainable_words", -1)
    if not isinstance(trainable_words, int) or isinstance(trainable_words, bool):
        raise ModelFileError("trainable_words must be an integer", path)
    library_version = config.get("library_version", __version__)
    try:
        meta = ModelMeta.from_json(
            config.get("meta", {}),
            kind=kind,
            scheme=config.get("scheme"),
            output_scheme=config.get("output_scheme"),
            library_version=library_version if isinstance(library_version, str) else __version__,
        )
    except ValueError as error:
        raise ModelFileError(str(error), path) from None
    quantize = config.get("quantize")
    if quantize not in (None, "int8"):
        raise ModelFileError(f"quantize must be int8 or absent, got {short_json(quantize)}", path)
    if quantize is not None:
        meta = dataclasses.replace(meta, int8=True)
    return _Settings(model_config, trainable_words, meta)


def _check_stored_shapes(path: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """The weights file holds exactly the tensors of `expected` (name → shape), shape for shape
    (header only).

    Returns:
        The stored dtype of each tensor, as safetensors names it (`F32`, `F16`).
    """
    try:
        with safe_open(str(path), framework="numpy") as weights:
            names = list(weights.keys())
            slices = {name: weights.get_slice(name) for name in names}
            stored = {name: tuple(part.get_shape()) for name, part in slices.items()}
            dtypes = {name: part.get_dtype() for name, part in slices.items()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"not a valid safetensors file: {error}", path) from None
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong = [
        f"{name} is {list(stored[name])}, the config needs {list(shape)}"
        for name, shape in expected.items()
        if name in stored and stored[name] != tuple(shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensor(s) {', '.join(missing[:4])}")
    if unexpected:
        problems.append(f"unexpected tensor(s) {', '.join(unexpected[:4])}")
    problems += wrong[:2]
    if problems:
        raise ModelFileError(f"weights do not fit the config: {'; '.join(problems)}", path)
    return dtypes


# safetensors' names of the dtypes a model's tensors may be stored in, by the kind the model
# builds: floats in any float width (converted on load), masks as booleans.
_STORED_KINDS = {
    "float": ("F16", "BF16", "F32", "F64"),
    "bool": ("BOOL",),
    "int": ("I8", "I16", "I32", "I64", "U8"),
}


def _check_stored_dtypes(path: Path, stored: dict[str, str], expected: dict[str, Any]) -> None:
    """Each stored tensor holds the kind of number the model built there: bytes relabelled from
    F32 to I32 have the same size and would load as garbage."""
    import torch

    for name, tensor in expected.items():
        kind = (
            "float"
            if tensor.is_floating_point()
            else "bool"
            if tensor.dtype == torch.bool
            else "int"
        )
        if stored[name] not in _STORED_KINDS[kind]:
            raise ModelFileError(
                f"{name} is stored as {stored[name]}; the model holds {kind}s there "
                f"({' or '.join(_STORED_KINDS[kind])})",
                path,
            )


def _check_stored_values(
    path: Path, state: dict[str, Any], built_buffers: dict[str, Any], meta: ModelMeta
) -> None:
    """Weights are finite (one NaN makes every score NaN, silently), and the buffers, which the
    config, scheme and labels fix (the CRF's allowed transitions), are those the model builds."""
    import torch

    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{name} holds NaN or infinite values", path)
    for name, built in built_buffers.items():
        if not torch.equal(state[name], built):
            raise ModelFileError(
                f"{name} is not what the labels of {VOCAB_FILES['labels']} and the "
                f"{meta.scheme or 'plain-label'} scheme give: the weights or the labels were "
                "changed apart",
                path,
            )


def _available_memory() -> int | None:
    """This machine's physical memory in bytes; None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(shapes: dict[str, tuple[int, ...]], path: Path) -> None:
    """Refuse weights the machine cannot hold: a sparse or highly compressible file declares
    gigabytes in a few bytes, and loading would fail deep in torch with a MemoryError."""
    # float32 once built, plus the file's copy while it loads.
    needed = 2 * 4 * sum(math.prod(shape) for shape in shapes.values())
    memory = _available_memory()
    if memory is not None and needed > memory:
        raise ModelFileError(
            f"its tensors need about {needed / 2**30:,.1f} GiB to load; this machine has "
            f"{memory / 2**30:,.1f} GiB",
            path,
        )


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
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise ModelFileError("not a regular file (a folder, device or pipe)", path)
            # A buffer of the file's size, not of the bound (512 MiB for each vocabulary); more
            # only if the file grew since.
            data = handle.read(min(status.st_size, limit) + 1)
            if len(data) > status.st_size:
                data += handle.read(limit + 1 - len(data))
    except OSError as error:
        raise ModelFileError(f"unreadable: {error.strerror}", path) from None
    if len(data) > limit:
        raise ModelFileError(f"too large: more than {limit:,} bytes", path)
    return data


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _read_json(
    path: Path, kind: type, limit: int = CONFIG_MAX_BYTES, max_strings: int | None = None
) -> Any:
    data = _read_bounded(path, limit)
    # Two quotes a string, and one more for each quote escaped inside (a rare word).
    if max_strings is not None and (strings := data.count(b'"') // 2) > max_strings:
        raise ModelFileError(
            f"holds about {strings:,} strings; a vocabulary has at most {max_strings:,}", path
        )
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


def read_meta(directory: str | Path) -> tuple[ModelConfig, ModelMeta]:
    """A model folder's architecture and `ModelMeta`, from its config.json alone (the weights are
    not read).

    Raises:
        ModelFileError: the config.json is missing, unreadable or malformed.
    """
    config_path = Path(directory) / CONFIG_FILE
    settings = _check_config(_read_json(config_path, dict), config_path)
    return settings.model, dataclasses.replace(settings.meta, source=str(directory))


def describe_model(directory: str | Path) -> dict[str, Any]:
    """Name, task, dev score and size of a model directory, read from its config.json.

    Raises:
        ModelFileError: the config.json is missing, unreadable or malformed (as `load_model`
            would find it; the weights are not read).
    """
    directory = Path(directory)
    model, meta = read_meta(directory)
    # The weights of a torch model, or an ONNX folder's graph and CRF.
    weights = [
        path
        for path in (directory / name for name in (WEIGHTS_FILE, "model.onnx", "crf.safetensors"))
        if path.is_file()
    ]
    config = meta.provenance.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    return {
        "path": str(directory),
        "task": meta.task,
        # A classifier's head is its pooling; `model.head` only means something for taggers.
        "head": model.head
        if model.task == "tagger"
        else f"{model.pooling}-pool" + (f" ×{model.members}" if model.members > 1 else ""),
        **meta.headline_figure(),
        "size_mb": round(sum(p.stat().st_size for p in weights) / 1e6, 1) if weights else None,
        "trained_on": data.get("train") if isinstance(data, dict) else None,
    }
