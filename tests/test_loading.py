"""corpus/loading.py, formats.py, hub.py: formats, Corpus splits and their features, schemes, hub.

Most tests use the hand-made samples in corpora/samples (laid out like the real corpora); the ones
taking `shared_corpora` check the real files: scheme round trips, CoNLL-2000's dev split and a
hub-layout folder built from CoNLL-2003.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import ClassLabel, List, Value

from bilstm_nlp.corpus import registry
from bilstm_nlp.corpus.formats import detect_format, parse_split_spec, read_sentences, read_texts
from bilstm_nlp.corpus.hub import load_hub_tagging
from bilstm_nlp.corpus.loading import Corpus, load_tagging, load_texts
from bilstm_nlp.corpus.stats import corpus_stats
from bilstm_nlp.errors import ConfigError, InputFormatError
from bilstm_nlp.text.schemes import convert_tags, tags_to_spans

pytestmark = pytest.mark.usefixtures("datasets_cache")


def write(directory: Path, name: str, content: str) -> Path:
    path = directory / name
    path.write_text(content, encoding="utf-8")
    return path


def decoded_tags(corpus: Corpus, split: str) -> list[list[str]]:
    names = corpus[split].features["tags"].feature.names
    return [[names[i] for i in row] for row in corpus[split]["tags"]]


def described(corpus: Corpus) -> tuple[str, str | None, str | None]:
    return corpus.info.input_format, corpus.info.source_scheme, corpus.info.scheme


# Formats


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("conll2003/train.txt", "conll"),
        ("wnut17/dev.txt", "conll"),
        ("conll2000/train.txt", "conll"),
        ("ud_ewt/train.conllu", "conllu"),
        ("sst/train.txt", "sst"),
    ],
)
def test_detect_format_samples(samples: Path, relative: str, expected: str) -> None:
    assert detect_format(samples / relative) == expected


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.txt", "\n\n# sent_id = 1\n1\tA\ta\tX\tX\t_\t0\troot\t_\t_\n", "conllu"),
        ("a.txt", "1\tA\ta\tX\tX\t_\t0\troot\t_\t_\n", "conllu"),
        ("a.tsv", "1\tA\ta\tX\tX\t_\t0\troot\t_\t_\n", "conllu"),
        ("a.tsv", "Jo\tB-PER\n", "conll"),
        ("a.tsv", "id\ttext\tlabel\n1\tfine\tpos\n", "tsv"),
        ("a.tsv", "text\tO\nmore\tO\n", "conll"),
        ("a.txt", '{"tokens": ["a"]}\n', "jsonl"),
        ("a.jsonl", "anything", "jsonl"),
        ("a.conllu", "anything", "conllu"),
        ("a.csv", "anything", "csv"),
        ("a.dat", "  (3 (2 a) (2 b))\n", "sst"),
        ("a.txt", "(see this) O\n", "conll"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, content: str, expected: str) -> None:
    assert detect_format(write(tmp_path, name, content)) == expected


def test_detect_format_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="empty file"):
        detect_format(write(tmp_path, "e.txt", "\n \n"))
    with pytest.raises(InputFormatError, match="no such file"):
        detect_format(tmp_path / "missing.txt")


def test_read_sentences_and_texts_dispatch(samples: Path) -> None:
    assert len(list(read_sentences(samples / "ud_ewt" / "dev.conllu"))) == 1
    assert len(list(read_sentences(samples / "conll2003" / "dev.txt", label_column=1))) == 2
    assert len(list(read_texts(samples / "sst" / "dev.txt", sst_labels="sst5"))) == 2
    with pytest.raises(ConfigError, match="does not hold tagged sentences"):
        read_sentences(samples / "sst" / "dev.txt")
    with pytest.raises(ConfigError, match="does not hold labelled texts"):
        read_texts(samples / "conll2003" / "dev.txt")
    with pytest.raises(ConfigError, match="unknown input format 'iob'"):
        read_sentences(samples / "conll2003" / "dev.txt", "iob")
    with pytest.raises(ConfigError, match="label column applies to CoNLL"):
        read_sentences(samples / "ud_ewt" / "dev.conllu", label_column=3)
    with pytest.raises(ConfigError, match="tag field 'lemma'"):
        read_sentences(samples / "ud_ewt" / "dev.conllu", tag_field="lemma")
    with pytest.raises(ConfigError, match="SST labels"):
        read_texts(samples / "sst" / "dev.txt", sst_labels="sst3")


@pytest.mark.parametrize(
    ("spec", "expected"), [("last:1000", ("last", 1000)), ("first:1", ("first", 1))]
)
def test_parse_split_spec(spec: str, expected: tuple[str, int]) -> None:
    assert parse_split_spec(spec) == expected


@pytest.mark.parametrize("spec", ["last", "last:0", "middle:3", "last:-2", "last:1x", "LAST:2"])
def test_parse_split_spec_rejects(spec: str) -> None:
    with pytest.raises(ConfigError, match="expected 'last:N' or 'first:N'"):
        parse_split_spec(spec)


# Tagging datasets


def test_load_tagging_features_ids_and_scheme(samples: Path) -> None:
    folder = samples / "conll2003"
    dataset_dict = load_tagging(folder / "train.txt", folder / "dev.txt")
    assert list(dataset_dict) == ["train", "dev"]
    features = dataset_dict["train"].features
    assert features["id"] == Value("string") and features["doc_id"] == Value("string")
    assert features["tokens"] == List(Value("string"))
    assert features["tags"] == List(
        ClassLabel(names=["B-MISC", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"])
    )
    first = dataset_dict["train"][0]
    assert first["id"] == "train.txt:3" and first["doc_id"] == "doc-1"
    assert first["tokens"] == ["Mara", "Lind", "flew", "to", "Oslo", "."]
    assert decoded_tags(dataset_dict, "dev")[1] == ["I-PER", "O", "O"]
    assert described(dataset_dict) == ("conll", "IOB1", "IOB1")
    assert dataset_dict.info.scheme == "IOB1"
    assert dataset_dict.info.reader == {
        "label_column": None,
        "tag_field": "upos",
        "misaligned": "error",
    }


def test_load_tagging_converts_to_the_asked_scheme(samples: Path) -> None:
    folder = samples / "conll2003"
    dataset_dict = load_tagging(folder / "train.txt", folder / "dev.txt", scheme="bilou")
    assert described(dataset_dict) == ("conll", "IOB1", "BIOES")
    assert decoded_tags(dataset_dict, "train")[1] == [
        "B-ORG", "E-ORG", "O", "B-PER", "E-PER", "B-PER", "E-PER", "O",
    ]  # fmt: skip
    # Same scheme as the source: canonical tags (the stray B-MISC after O becomes I-MISC).
    same = load_tagging(folder / "train.txt", scheme="IOB1")
    assert decoded_tags(same, "train")[2] == ["O", "I-MISC", "I-MISC", "O", "O"]
    assert "B-MISC" not in same["train"].features["tags"].feature.names


def test_load_tagging_plain_labels_ignore_the_scheme(samples: Path) -> None:
    folder = samples / "ud_ewt"
    dataset_dict = load_tagging(folder / "train.conllu", folder / "dev.conllu", scheme="BIOES")
    assert described(dataset_dict) == ("conllu", None, None)
    assert dataset_dict["dev"][0]["tokens"] == ["It", "'s", "late", "."]
    assert decoded_tags(dataset_dict, "dev")[0] == ["PRON", "AUX", "ADJ", "PUNCT"]
    assert [row["doc_id"] for row in dataset_dict["train"]] == ["sample-1", "sample-1", "sample-2"]


def test_load_tagging_label_names(samples: Path) -> None:
    path = samples / "wnut17" / "dev.txt"
    names = ["O", "B-product", "I-product", "B-location", "I-location", "B-person"]
    dataset_dict = load_tagging(dev=path, label_names=names)
    assert dataset_dict["dev"].features["tags"].feature.names == names
    assert dataset_dict["dev"][0]["tags"] == [0, 0, 3, 0]
    with pytest.raises(InputFormatError) as info:
        load_tagging(dev=path, label_names=["O", "B-location"])
    assert str(info.value).startswith(f"{path}:6: tag 'B-product'")
    with pytest.raises(ConfigError, match="twice"):
        load_tagging(dev=path, label_names=["O", "O"])


@pytest.mark.parametrize(("spec", "dev_first"), [("last:1", "Prices"), ("first:2", "Sales")])
def test_load_tagging_dev_from_train(samples: Path, spec: str, dev_first: str) -> None:
    dataset_dict = load_tagging(samples / "conll2000" / "train.txt", dev_from_train=spec)
    sizes = {split: len(dataset) for split, dataset in dataset_dict.items()}
    assert sizes == ({"train": 2, "dev": 1} if spec == "last:1" else {"train": 1, "dev": 2})
    assert dataset_dict["dev"][0]["tokens"][0] == dev_first
    assert len({row["id"] for split in dataset_dict.values() for row in split}) == 3


def test_load_tagging_bad_options(samples: Path) -> None:
    train = samples / "conll2000" / "train.txt"
    with pytest.raises(ConfigError, match="leaves no training sentence"):
        load_tagging(train, dev_from_train="last:3")
    with pytest.raises(ConfigError, match="needs a train file and no dev file"):
        load_tagging(train, train, dev_from_train="last:1")
    with pytest.raises(ConfigError, match="no corpus file"):
        load_tagging()
    with pytest.raises(ConfigError, match="unknown tag scheme"):
        load_tagging(train, scheme="IOE1")
    with pytest.raises(ConfigError, match="does not hold tagged sentences"):
        load_tagging(samples / "sst" / "train.txt")


def test_load_tagging_rejects_unlabelled_and_mixed_files(tmp_path: Path, samples: Path) -> None:
    words = write(tmp_path, "words.txt", "a\nb\n")
    with pytest.raises(InputFormatError, match="no tags"):
        load_tagging(words)
    pos = write(tmp_path, "pos.txt", "a NN\nb VB\n")
    with pytest.raises(InputFormatError, match="mix"):
        load_tagging(samples / "wnut17" / "train.txt", pos)


def test_load_tagging_bad_file_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.txt", "a O\nb B-PER\n\nc X-PER\n")
    with pytest.raises(InputFormatError) as info:
        load_tagging(path)
    assert str(info.value).startswith(f"{path}:4: tag 'X-PER' fits no tag scheme")


def test_load_tagging_rebuilds_when_the_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path, "t.txt", "aa O\n")
    assert load_tagging(path)["train"][0]["tokens"] == ["aa"]
    before = path.stat().st_mtime_ns
    path.write_text("bb O\n", encoding="utf-8")  # same size
    os.utime(path, ns=(before + 10**9, before + 10**9))
    assert load_tagging(path)["train"][0]["tokens"] == ["bb"]


# Text datasets


def test_load_texts_sst(samples: Path) -> None:
    folder = samples / "sst"
    sst5 = load_texts(folder / "train.txt", folder / "dev.txt", sst_labels="sst5")
    # Train's names are its own labels; dev appends the one only it has, keeping train's ids.
    assert sst5["train"].features["label"] == ClassLabel(names=["0", "1", "2", "3"])
    assert sst5.label_names("dev") == ["0", "1", "2", "3", "4"]
    assert sst5.labels("dev") == ["4", "2"]
    joined = sst5.joined(("train", "dev"))
    assert joined.features["label"].names == ["0", "1", "2", "3", "4"]
    assert joined["label"] == [3, 1, 2, 0, 4, 2]
    assert sst5["train"].features["tokens"] == List(Value("string"))
    assert sst5["train"]["label"] == [3, 1, 2, 0]
    assert sst5["train"][1]["tokens"][3] == "2\u00a01\\/2"
    assert described(sst5) == ("sst", None, None)
    sst2 = load_texts(folder / "train.txt", folder / "dev.txt", phrases=True)
    assert sst2["train"].features["label"].names == ["negative", "positive"]
    assert sst2["dev"]["id"] == ["line-1"]  # dev holds whole sentences only
    train_ids = sst2["train"]["id"]
    assert train_ids[:3] == ["line-1", "line-1/node-4", "line-1/node-6"]
    assert "line-3" not in train_ids  # a neutral sentence


def test_load_texts_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "t.csv", 'text,label\nGood,pos\n"Bad, bad",neg\n')
    jsonl_path = write(tmp_path, "d.jsonl", '{"text": "Fine", "label": "pos", "id": "x1"}\n')
    dataset_dict = load_texts(csv_path, jsonl_path)
    assert dataset_dict["train"]["text"] == ["Good", "Bad, bad"]
    assert dataset_dict["train"]["id"] == ["t.csv:2", "t.csv:3"]
    assert dataset_dict["train"]["tokens"] == [[], []]
    assert dataset_dict["dev"]["id"] == ["x1"]
    assert dataset_dict["dev"].features["label"].names == ["neg", "pos"]
    unlabelled = write(tmp_path, "u.csv", "text\nGood\n")
    with pytest.raises(InputFormatError, match="no labels"):
        load_texts(unlabelled)
    with pytest.raises(InputFormatError) as info:
        load_texts(csv_path, label_names=["pos"])
    assert str(info.value).startswith(f"{csv_path}:3: label 'neg'")


# Registry


@pytest.mark.parametrize("name", ["conll2003", "wnut17", "ud_ewt"])
def test_registry_entries_load_the_samples(samples: Path, name: str) -> None:
    entry = registry.get_corpus(name)
    dataset_dict = load_tagging(
        entry.path("train", samples),
        entry.path("dev", samples),
        input_format=entry.format,
        label_column=entry.label_column,
        tag_field=entry.tag_field or "upos",
    )
    assert dataset_dict.info.source_scheme == entry.scheme


def test_registry_files_exist_in_the_shared_corpora(shared_corpora: Path) -> None:
    for entry in registry.load_registry().values():
        assert entry.path("train", shared_corpora).is_file()
        if entry.dev is not None:
            assert entry.path("dev", shared_corpora).is_file()
        assert detect_format(entry.path("train", shared_corpora)) == entry.format


# Hub layout

_README = """---
dataset_info:
  features:
  - name: id
    dtype: string
  - name: tokens
    sequence: string
{class_labels}
---
# A hub-layout dataset built by the tests
"""


def _class_label_yaml(column: str, names: list[str]) -> str:
    lines = [f"  - name: {column}", "    sequence:", "      class_label:", "        names:"]
    lines += [f"          '{i}': '{name}'" for i, name in enumerate(names)]
    return "\n".join(lines)


def build_hub_folder(folder: Path, splits: dict[str, dict[str, list]], names: dict[str, list]):
    """Write `README.md` (dataset_info YAML) and `data/<split>-00000-of-00001.parquet`.

    The parquet files hold plain int lists, so the ClassLabel names come from the README only.
    """
    (folder / "data").mkdir(parents=True)
    yaml = "\n".join(_class_label_yaml(column, names[column]) for column in names)
    (folder / "README.md").write_text(_README.format(class_labels=yaml), encoding="utf-8")
    for split, columns in splits.items():
        table = pa.table(
            {
                "id": pa.array(columns["id"], pa.string()),
                "tokens": pa.array(columns["tokens"], pa.list_(pa.string())),
                **{c: pa.array(columns[c], pa.list_(pa.int64())) for c in names},
            }
        )
        pq.write_table(table, folder / "data" / f"{split}-00000-of-00001.parquet")


def hub_columns(sentences: list, tag_columns: dict[str, list[list[str]]], names: dict) -> dict:
    ids = {column: {name: i for i, name in enumerate(names[column])} for column in names}
    return {
        "id": [str(i) for i in range(len(sentences))],
        "tokens": [s.tokens for s in sentences],
        **{
            column: [[ids[column][t] for t in tags] for tags in rows]
            for column, rows in tag_columns.items()
        },
    }


def test_hub_folder_small(tmp_path: Path, samples: Path) -> None:
    sentences = list(read_sentences(samples / "wnut17" / "train.txt"))
    names = {"ner_tags": sorted({t for s in sentences for t in s.tags}, reverse=True)}
    columns = hub_columns(sentences, {"ner_tags": [s.tags for s in sentences]}, names)
    build_hub_folder(tmp_path / "hub", {"train": columns, "validation": columns}, names)
    dataset_dict = load_hub_tagging(tmp_path / "hub", registry.get_corpus("wnut17"))
    assert list(dataset_dict) == ["train", "dev"]
    assert dataset_dict["train"]["id"] == ["0", "1", "2"]
    assert dataset_dict["dev"]["tokens"] == [s.tokens for s in sentences]
    assert decoded_tags(dataset_dict, "dev") == [s.tags for s in sentences]
    assert described(dataset_dict) == ("hub", "IOB2", "IOB2")
    with pytest.raises(ConfigError, match="no hub dataset"):
        load_hub_tagging(tmp_path / "hub", registry.get_corpus("ud_ewt"))
    with pytest.raises(InputFormatError, match="no column 'chunk_tags'"):
        load_hub_tagging(tmp_path / "hub", registry.get_corpus("conll2000"))
    with pytest.raises(ConfigError, match="none of the splits"):
        load_hub_tagging(tmp_path / "hub", registry.get_corpus("wnut17"), split_names={"x": "y"})


def test_hub_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="cannot load the dataset"):
        load_hub_tagging(tmp_path / "absent", registry.get_corpus("conll2003"))


def test_hub_layout_conll2003_matches_the_file_reader(tmp_path: Path, shared_corpora: Path) -> None:
    # Build a folder laid out like the parquet conversion of conll2003 on the hub (tokens, pos_tags,
    # chunk_tags, ner_tags as ClassLabel ids, tags in IOB2) from the real files.
    entry = registry.get_corpus("conll2003")
    train, dev = entry.path("train", shared_corpora), entry.path("dev", shared_corpora)
    read = {
        split: {column: list(read_sentences(path, label_column=c)) for column, c in
                (("pos_tags", 1), ("chunk_tags", 2), ("ner_tags", 3))}
        for split, path in (("train", train), ("validation", dev))
    }  # fmt: skip
    tag_columns = {
        split: {
            "pos_tags": [s.tags for s in columns["pos_tags"]],
            "chunk_tags": [convert_tags(s.tags, "IOB2") for s in columns["chunk_tags"]],
            "ner_tags": [convert_tags(s.tags, "IOB2") for s in columns["ner_tags"]],
        }
        for split, columns in read.items()
    }
    names = {
        column: sorted(
            {t for split in tag_columns.values() for tags in split[column] for t in tags}
        )
        for column in ("pos_tags", "chunk_tags", "ner_tags")
    }
    build_hub_folder(
        tmp_path / "conll2003",
        {split: hub_columns(read[split]["ner_tags"], tag_columns[split], names) for split in read},
        names,
    )

    from_hub = load_hub_tagging(tmp_path / "conll2003", entry, scheme="BIOES")
    from_files = load_tagging(train, dev, scheme="BIOES")
    assert described(from_hub) == ("hub", "IOB2", "BIOES")
    assert described(from_files) == ("conll", "IOB1", "BIOES")
    assert {split: len(d) for split, d in from_hub.items()} == {"train": 14041, "dev": 3250}
    for split in ("train", "dev"):
        assert from_hub[split]["tokens"] == from_files[split]["tokens"]
        hub_tags, file_tags = decoded_tags(from_hub, split), decoded_tags(from_files, split)
        assert hub_tags == file_tags
        assert [tags_to_spans(t) for t in hub_tags] == [
            tags_to_spans(s.tags)
            for s in read["train" if split == "train" else "validation"]["ner_tags"]
        ]


# Real corpora: scheme round trips and CoNLL-2000's dev split

ROUND_TRIPS = [
    ("conll2003/train.txt", 3, "IOB1", [152428, 175436]),
    ("conll2003/dev.txt", 3, "IOB1", []),
    ("conll2003/train.txt", 2, "IOB1", []),  # chunk tags
    ("wnut17/train.txt", None, "IOB2", []),
    ("wnut17/dev.txt", None, "IOB2", []),
    ("conll2000/train.txt", None, "IOB2", []),
]


@pytest.mark.parametrize(("relative", "label_column", "source", "changed_lines"), ROUND_TRIPS)
def test_scheme_round_trips_on_real_corpora(
    shared_corpora: Path,
    relative: str,
    label_column: int | None,
    source: str,
    changed_lines: list[int],
) -> None:
    # source → BIOES → source keeps every span; tags change only where the source was not
    # canonical (CoNLL-2003 train: 2 B-MISC after O, at the lines its README names).
    changed = []
    for sentence in read_sentences(shared_corpora / relative, label_column=label_column):
        spans = tags_to_spans(sentence.tags)
        bioes = convert_tags(sentence.tags, "BIOES")
        back = convert_tags(bioes, source)
        other = convert_tags(sentence.tags, "IOB2" if source == "IOB1" else "IOB1")
        assert tags_to_spans(bioes) == spans
        assert tags_to_spans(back) == spans
        assert tags_to_spans(other) == spans
        assert convert_tags(convert_tags(other, "BIOES"), source) == back
        for position, (before, after) in enumerate(zip(sentence.tags, back, strict=True)):
            if before != after:
                # One token per line: the token's line is the sentence's line plus its position.
                changed.append((sentence.line + position, before, after))
    assert changed == [(line, "B-MISC", "I-MISC") for line in changed_lines]


def test_conll2000_dev_from_train_last_1000(shared_corpora: Path) -> None:
    entry = registry.get_corpus("conll2000")
    dataset_dict = load_tagging(
        entry.path("train", shared_corpora), dev_from_train=entry.dev_from_train
    )
    assert len(dataset_dict["train"]) == 7936 and len(dataset_dict["dev"]) == 1000
    dev = dataset_dict["dev"]
    assert dev[0]["tokens"][:8] == [
        "The",
        "biggest",
        "wild",
        "card",
        "in",
        "the",
        "brand",
        "loyalty",
    ]
    assert sum(len(tokens) for tokens in dev["tokens"]) == 23668
    assert sum(len(tags_to_spans(tags)) for tags in decoded_tags(dataset_dict, "dev")) == 11759
    train_tags = decoded_tags(dataset_dict, "train")
    assert sum(len(tokens) for tokens in dataset_dict["train"]["tokens"]) == 188059
    assert sum(len(tags_to_spans(tags)) for tags in train_tags) == 95219


def test_corpus_stats_library_matches_readme(shared_corpora: Path) -> None:
    stats = corpus_stats(shared_corpora / "conll2000" / "train.txt")
    assert (stats.sentences, stats.tokens, stats.entities) == (8936, 211727, 106978)
    assert stats.documents is None and stats.scheme == "IOB2"
    assert stats.entity_counts["NP"] == 55081 and stats.entity_counts["UCP"] == 2
