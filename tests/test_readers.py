"""Readers: hand-written files with known contents, every bad-input case, and properties.

Bad input must raise `InputFormatError` whose `str()` is `path:line: what was expected, what was
found`; nothing is padded, truncated or skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bilstm_nlp.corpus.readers import Sentence, TextExample
from bilstm_nlp.corpus.readers._lines import read_lines
from bilstm_nlp.corpus.readers.conll import read_conll
from bilstm_nlp.corpus.readers.conllu import read_conllu
from bilstm_nlp.corpus.readers.jsonl import read_jsonl_tagged, read_jsonl_texts
from bilstm_nlp.corpus.readers.sst import read_sst
from bilstm_nlp.corpus.readers.table import read_table
from bilstm_nlp.errors import InputFormatError


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def error_of(read: Callable[[], Iterable[object]]) -> InputFormatError:
    with pytest.raises(InputFormatError) as info:
        list(read())
    return info.value


def assert_error_at(error: InputFormatError, path: Path, line: int | None, *fragments: str) -> None:
    assert error.path == str(path)
    assert error.line == line
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(error).startswith(prefix), str(error)
    for fragment in fragments:
        assert fragment in str(error), (fragment, str(error))


def conllu_line(*columns: str) -> str:
    return "\t".join(columns)


def word(index: str, form: str, upos: str = "NOUN", xpos: str = "NN") -> str:
    return conllu_line(index, form, form.lower(), upos, xpos, "_", "0", "root", "0:root", "_")


# CoNLL columns


def test_conll2003_sample_documents_sentences_and_lines(samples: Path) -> None:
    sentences = list(read_conll(samples / "conll2003" / "train.txt"))
    assert [s.tokens for s in sentences] == [
        ["Mara", "Lind", "flew", "to", "Oslo", "."],
        ["Acme", "Corp", "thanked", "Jo", "Pike", "Ed", "Gray", "."],
        ["the", "Harbour", "Games", "opened", "."],
    ]
    assert sentences[1].tags == ["I-ORG", "I-ORG", "O", "I-PER", "I-PER", "B-PER", "I-PER", "O"]
    assert [s.doc_id for s in sentences] == ["doc-1", "doc-1", "doc-2"]
    assert [s.line for s in sentences] == [3, 10, 21]


def test_label_column_picks_any_column(samples: Path) -> None:
    path = samples / "conll2003" / "train.txt"
    first = next(iter(read_conll(path, label_column=1)))
    assert first.tags == ["NNP", "NNP", "VBD", "TO", "NNP", "."]
    assert next(iter(read_conll(path, label_column=-2))).tags == [
        "I-NP",
        "I-NP",
        "I-VP",
        "I-PP",
        "I-NP",
        "O",
    ]
    assert next(iter(read_conll(path, label_column=3))).tags == next(iter(read_conll(path))).tags


@pytest.mark.parametrize(
    ("label_column", "fragment"),
    [(0, "is the word column"), (-4, "is the word column"), (4, "outside the 4 columns")],
)
def test_label_column_out_of_range(samples: Path, label_column: int, fragment: str) -> None:
    path = samples / "conll2003" / "train.txt"
    assert_error_at(error_of(lambda: read_conll(path, label_column)), path, 3, fragment)


def test_wnut_tab_only_lines_end_sentences(samples: Path) -> None:
    path = samples / "wnut17" / "train.txt"
    assert "\n\t\n" in path.read_text(encoding="utf-8")  # the quirk this test is about
    sentences = list(read_conll(path))
    assert [len(s.tokens) for s in sentences] == [7, 5, 4]
    assert sentences[0].tags[2:4] == ["B-creative-work", "I-creative-work"]
    assert all(s.doc_id is None for s in sentences)


def test_one_column_file_is_unlabelled(tmp_path: Path) -> None:
    path = write(tmp_path, "words.txt", "Hello\nworld\n\nBye\n")
    assert list(read_conll(path)) == [
        Sentence(["Hello", "world"], None, None, 1),
        Sentence(["Bye"], None, None, 4),
    ]


def test_words_keep_non_ascii_spaces_and_bom_inside(tmp_path: Path) -> None:
    # U+00A0 and U+FEFF are no column separators (WNUT dev has `Dubbz\ufeff`).
    path = write(tmp_path, "odd.txt", "\ufeffA\u00a0B O\nDubbz\ufeff\tB-person\r\n")
    (sentence,) = read_conll(path)
    assert sentence.tokens == ["A\u00a0B", "Dubbz\ufeff"]  # the BOM at byte 0 is dropped
    assert sentence.tags == ["O", "B-person"]


def test_plain_labels_are_not_scheme_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "pos.txt", "x NN|SYM\ny -X-\nz X-PER\n")
    assert next(iter(read_conll(path))).tags == ["NN|SYM", "-X-", "X-PER"]


def test_conll_wrong_column_count(tmp_path: Path) -> None:
    text = "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\nGermany NNP B-NP\n"
    path = write(tmp_path, "train.conll", text)
    assert_error_at(
        error_of(lambda: read_conll(path)),
        path,
        4,
        "expected 4 columns (as on line 1), got 3: 'Germany NNP B-NP'",
    )


@pytest.mark.parametrize("bad_tag", ["X-PER", "B-", "I_PER", "b-PER"])
def test_conll_tag_outside_every_scheme(tmp_path: Path, bad_tag: str) -> None:
    path = write(tmp_path, "ner.txt", f"Jo B-PER\nsaw O\n\nit {bad_tag}\n")
    assert_error_at(
        error_of(lambda: read_conll(path)), path, 4, repr(bad_tag), "fits no tag scheme"
    )


def test_conll_bad_tag_before_the_first_scheme_tag(tmp_path: Path) -> None:
    path = write(tmp_path, "ner.txt", "Jo X-PER\n\nsaw O\n")
    assert_error_at(error_of(lambda: read_conll(path)), path, 1, "'X-PER'", "'O' on line 3")


# Every reader: missing, empty, non-UTF-8


def _readers(name: str) -> Callable[[Path], Iterable[object]]:
    return {
        "conll": read_conll,
        "conllu": read_conllu,
        "jsonl_tagged": read_jsonl_tagged,
        "jsonl_texts": read_jsonl_texts,
        "table": read_table,
        "sst": read_sst,
    }[name]


_GOOD_FIRST_LINES = {
    "conll": ("a.txt", "Jo B-PER\n"),
    "conllu": ("a.conllu", word("1", "Jo") + "\n"),
    "jsonl_tagged": ("a.jsonl", '{"tokens": ["Jo"], "tags": ["B-PER"]}\n'),
    "jsonl_texts": ("a.jsonl", '{"text": "Jo", "label": "x"}\n'),
    "table": ("a.csv", "text,label\nJo,x\n"),
    "sst": ("a.txt", "(2 (2 Jo) (2 ran))\n"),
}
READERS = sorted(_GOOD_FIRST_LINES)


@pytest.mark.parametrize("reader", READERS)
def test_missing_file(tmp_path: Path, reader: str) -> None:
    path = tmp_path / "nope" / _GOOD_FIRST_LINES[reader][0]
    assert_error_at(error_of(lambda: _readers(reader)(path)), path, None, "no such file")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("content", ["", "\n\n", " \t\n"])
def test_empty_file(tmp_path: Path, reader: str, content: str) -> None:
    path = write(tmp_path, _GOOD_FIRST_LINES[reader][0], content)
    assert_error_at(error_of(lambda: _readers(reader)(path)), path, None, "empty file")


@pytest.mark.parametrize("reader", READERS)
def test_non_utf8_byte_names_its_line(tmp_path: Path, reader: str) -> None:
    name, good = _GOOD_FIRST_LINES[reader]
    last_good = good.rstrip("\n").splitlines()[-1]
    content = good.encode() + last_good.encode().replace(b"Jo", b"J\xe9") + b"\n"
    path = write(tmp_path, name, content)
    line = good.count("\n") + 1
    assert_error_at(error_of(lambda: _readers(reader)(path)), path, line, "not valid UTF-8", "0xe9")


def test_read_lines_splits_at_lf_only(tmp_path: Path) -> None:
    path = write(tmp_path, "x.txt", "a\u2028b\r\nc\x85d\n")
    assert list(read_lines(path)) == [(1, "a\u2028b"), (2, "c\x85d")]


def test_docstart_only_file_has_no_sentences(tmp_path: Path) -> None:
    path = write(tmp_path, "docs.txt", "-DOCSTART- -X- O O\n\n")
    assert_error_at(error_of(lambda: read_conll(path)), path, None, "empty file: no sentences")


# CoNLL-U


def test_conllu_sample_skips_ranges_and_empty_nodes(samples: Path) -> None:
    sentences = list(read_conllu(samples / "ud_ewt" / "train.conllu"))
    assert [s.tokens for s in sentences] == [
        ["I", "do", "n't", "like", "rain", "."],
        ["Sam", "ate", "figs", "and", "Kim", "pears", "."],
        ["Hello", "!"],
    ]
    assert sentences[0].tags == ["PRON", "AUX", "PART", "VERB", "NOUN", "PUNCT"]
    assert [s.doc_id for s in sentences] == ["sample-1", "sample-1", "sample-2"]
    assert [s.line for s in sentences] == [4, 14, 26]
    xpos = list(read_conllu(samples / "ud_ewt" / "train.conllu", tag_field="xpos"))
    assert xpos[1].tags == ["NNP", "VBD", "NNS", "CC", "NNP", "NNS", "."]


def test_conllu_bare_newdoc_numbers_documents(tmp_path: Path) -> None:
    text = f"# newdoc\n{word('1', 'A')}\n\n{word('1', 'B')}\n\n# newdoc\n{word('1', 'C')}\n\n"
    path = write(tmp_path, "d.conllu", text)
    assert [s.doc_id for s in read_conllu(path)] == ["doc-1", "doc-1", "doc-2"]


def test_conllu_bad_tag_field() -> None:
    with pytest.raises(ValueError, match="tag_field"):
        read_conllu("whatever.conllu", tag_field="deprel")


@pytest.mark.parametrize(
    ("bad_line", "fragment"),
    [
        ("2\tx\tx\tNOUN\tNN\t_\t1\tdep\t_", "expected 10 tab-separated columns, got 9"),
        ("2\tx\tx\tNOUN\tNN\t_\t1\tdep\t_\t_\t_", "expected 10 tab-separated columns, got 11"),
        ("2\tx\t\tNOUN\tNN\t_\t1\tdep\t_\t_", "column LEMMA is empty"),
        ("2\tx\tx\tNOUN\tNN\t_\tone\tdep\t_\t_", "not a valid value"),
        ("two\tx\tx\tNOUN\tNN\t_\t1\tdep\t_\t_", "not a valid ID"),
        ("3\tx\tx\tNOUN\tNN\t_\t1\tdep\t_\t_", "expected word ID 2, got 3"),
        ("2\tx\tx\t_\tNN\t_\t1\tdep\t_\t_", "UPOS is '_' (no tag) for word 'x'"),
        ("2\tx  y\tx\tNOUN\tNN\t_\t1\tdep\t_\t_", "two spaces in a row"),
    ],
)
def test_conllu_bad_word_line(tmp_path: Path, bad_line: str, fragment: str) -> None:
    text = f"# sent_id = 1\n{word('1', 'A')}\n{bad_line}\n\n"
    path = write(tmp_path, "bad.conllu", text)
    assert_error_at(error_of(lambda: read_conllu(path)), path, 3, fragment)


def test_conllu_xpos_underscore_is_an_error_for_xpos_only(tmp_path: Path) -> None:
    path = write(tmp_path, "x.conllu", word("1", "A", xpos="_") + "\n\n")
    assert next(iter(read_conllu(path))).tags == ["NOUN"]
    assert_error_at(error_of(lambda: read_conllu(path, "xpos")), path, 1, "XPOS is '_'")


def test_conllu_indented_comment_is_a_comment(tmp_path: Path) -> None:
    path = write(tmp_path, "i.conllu", f"  # sent_id = 1\n{word('1', 'A')}\n\n")
    assert next(iter(read_conllu(path))) == Sentence(["A"], ["NOUN"], None, 2)


def test_conllu_comment_block_without_words(tmp_path: Path) -> None:
    path = write(tmp_path, "c.conllu", f"{word('1', 'A')}\n\n# a comment\n# another\n\n")
    assert_error_at(error_of(lambda: read_conllu(path)), path, 3, "no word lines")


def test_conllu_sentence_of_empty_nodes_only(tmp_path: Path) -> None:
    path = write(tmp_path, "e.conllu", conllu_line("0.1", "A", "a", "X", "X", *"_____") + "\n\n")
    assert_error_at(error_of(lambda: read_conllu(path)), path, 1, "no syntactic words")


# JSON Lines


def test_jsonl_tagged(tmp_path: Path) -> None:
    text = (
        '{"id": "s1", "doc_id": 7, "tokens": ["Jo", "ran"], "tags": ["B-PER", "O"]}\n'
        "\n"
        '{"tokens": ["Go"], "tags": ["O"]}\n'
    )
    path = write(tmp_path, "t.jsonl", text)
    assert list(read_jsonl_tagged(path)) == [
        Sentence(["Jo", "ran"], ["B-PER", "O"], "7", 1),
        Sentence(["Go"], ["O"], None, 3),
    ]


def test_jsonl_untagged(tmp_path: Path) -> None:
    path = write(tmp_path, "u.jsonl", '{"tokens": ["a"]}\n{"tokens": ["b", "c"]}\n')
    assert [s.tags for s in read_jsonl_tagged(path)] == [None, None]


@pytest.mark.parametrize(
    ("second_line", "fragment"),
    [
        ('{"tokens": ["a", "b"], "tags": ["O"]', "bad JSON at column"),
        ('["a", "b"]', "expected a JSON object, got an array"),
        ('{"words": ["a"], "tags": ["O"]}', "no field 'tokens'"),
        ('{"tokens": "a b", "tags": ["O"]}', "'tokens' must be an array of strings, got a string"),
        ('{"tokens": ["a", 2], "tags": ["O", "O"]}', "must hold strings, got a number at index 1"),
        ('{"tokens": ["a", ""], "tags": ["O", "O"]}', "empty string at index 1"),
        ('{"tokens": [], "tags": []}', "'tokens' is empty"),
        ('{"tokens": ["a", "b"], "tags": ["O"]}', "2 tokens but 1 tags"),
        ('{"tokens": ["a"]}', "lacks field 'tags', but the record on line 1 has it"),
        ('{"tokens": ["a"], "tags": ["X-PER"]}', "'X-PER' fits no tag scheme"),
        ('{"tokens": ["a"], "tags": ["O"], "doc_id": [1]}', "'doc_id' must be a string or an"),
        ('{"tokens": ["\\ud800"], "tags": ["O"]}', "lone UTF-16 surrogate"),
    ],
)
def test_jsonl_tagged_bad_record(tmp_path: Path, second_line: str, fragment: str) -> None:
    path = write(
        tmp_path, "bad.jsonl", '{"tokens": ["Jo"], "tags": ["B-PER"]}\n' + second_line + "\n"
    )
    assert_error_at(error_of(lambda: read_jsonl_tagged(path)), path, 2, fragment)


def test_jsonl_texts(tmp_path: Path) -> None:
    text = '{"text": "Great!", "label": 1, "id": 10}\n{"text": "Dull.", "label": "0", "id": "b"}\n'
    path = write(tmp_path, "x.jsonl", text)
    assert list(read_jsonl_texts(path)) == [
        TextExample("Great!", None, "1", "10", 1),
        TextExample("Dull.", None, "0", "b", 2),
    ]
    other = write(tmp_path, "y.jsonl", '{"review": "Fine", "stars": "5"}\n')
    assert list(read_jsonl_texts(other, "review", "stars")) == [
        TextExample("Fine", None, "5", None, 1)
    ]


@pytest.mark.parametrize(
    ("second_line", "fragment"),
    [
        ('{"label": "1"}', "no field 'text'"),
        ('{"text": 3, "label": "1"}', "'text' must be a string, got a number"),
        ('{"text": "a", "label": true}', "'label' must be a string or an integer, got true/false"),
        ('{"text": "a"}', "lacks field 'label'"),
        ("{'text': 'a', 'label': '1'}", "bad JSON"),
    ],
)
def test_jsonl_texts_bad_record(tmp_path: Path, second_line: str, fragment: str) -> None:
    path = write(tmp_path, "bad.jsonl", '{"text": "ok", "label": "1"}\n' + second_line + "\n")
    assert_error_at(error_of(lambda: read_jsonl_texts(path)), path, 2, fragment)


# Tables


def test_csv_with_quoted_newline_keeps_row_start_lines(tmp_path: Path) -> None:
    text = 'id,text,label\n1,"Good, really",pos\n2,"two\nlines",neg\n\n3,plain,pos\n'
    path = write(tmp_path, "t.csv", text)
    assert list(read_table(path, id_column="id")) == [
        TextExample("Good, really", None, "pos", "1", 2),
        TextExample("two\nlines", None, "neg", "2", 3),
        TextExample("plain", None, "pos", "3", 6),
    ]


def test_tsv_by_extension_and_unlabelled(tmp_path: Path) -> None:
    path = write(tmp_path, "t.tsv", "sentence\tscore\nA, b\t3\n")
    assert list(read_table(path, text_column="sentence", label_column="score")) == [
        TextExample("A, b", None, "3", None, 2)
    ]
    assert next(iter(read_table(path, text_column="sentence"))).label is None


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        ("text,label\na,1\nb,2,3\n", 3, "expected 2 columns (as in the header), got 3"),
        ("text,label\na,1\nb\n", 3, "expected 2 columns (as in the header), got 1"),
        ("review,label\na,1\n", 1, "no column 'text' in the header"),
        ('text,label\n"a"b,1\n', 2, "bad CSV"),
        # An empty label would become a class named ""; an empty text, an example of nothing.
        ("text,label\na,1\nb,\n", 3, "the label ('label') is empty"),
        ("text,label\na,1\n   ,1\n", 3, "the text ('text') is empty"),
    ],
)
def test_table_bad_rows(tmp_path: Path, content: str, line: int, fragment: str) -> None:
    path = write(tmp_path, "bad.csv", content)
    assert_error_at(error_of(lambda: read_table(path)), path, line, fragment)


def test_jsonl_texts_with_an_empty_label_or_text_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "l.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": " "}\n')
    assert_error_at(
        error_of(lambda: read_jsonl_texts(path)), path, 2, "the label ('label') is empty"
    )
    path = write(tmp_path, "t.jsonl", '{"text": "", "label": "x"}\n')
    assert_error_at(error_of(lambda: read_jsonl_texts(path)), path, 1, "the text ('text') is empty")
    # Unlabelled texts (to classify) may be empty.
    path = write(tmp_path, "u.jsonl", '{"text": ""}\n{"text": "b"}\n')
    assert [e.text for e in read_jsonl_texts(path)] == ["", "b"]


def test_table_missing_id_column_and_unknown_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "text,label\na,1\n")
    assert_error_at(error_of(lambda: read_table(path, id_column="id")), path, 1, "no column 'id'")
    other = write(tmp_path, "t.dat", "text,label\na,1\n")
    assert_error_at(error_of(lambda: read_table(other)), other, None, "delimiter")
    assert next(iter(read_table(other, delimiter=","))).text == "a"


def test_table_header_only(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "text,label\n")
    assert_error_at(error_of(lambda: read_table(path)), path, None, "empty file")


# SST trees

TREES = (
    "(3 (2 (2 A) (2 film)) (3 (2 that) (4 (4 sparkles) (2 .))))\n"
    "(2 (2 Just) (2 (2 a) (1 movie)))\n"
    "(1 (2 It) (0 (2 drags) (0 on)))\n"
)


def test_sst5_sentence_labels_and_tokens(tmp_path: Path) -> None:
    path = write(tmp_path, "trees.txt", TREES)
    assert list(read_sst(path, "sst5")) == [
        TextExample(
            "A film that sparkles .", ["A", "film", "that", "sparkles", "."], "3", "line-1", 1
        ),
        TextExample("Just a movie", ["Just", "a", "movie"], "2", "line-2", 2),
        TextExample("It drags on", ["It", "drags", "on"], "1", "line-3", 3),
    ]


def test_sst2_drops_neutral_and_maps_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "trees.txt", TREES + "(4 (4 Superb) (2 .))\n(0 (0 Awful) (2 .))\n")
    examples = list(read_sst(path, "sst2"))
    assert [(e.text, e.label, e.line) for e in examples] == [
        ("A film that sparkles .", "positive", 1),
        ("It drags on", "negative", 3),
        ("Superb .", "positive", 4),
        ("Awful .", "negative", 5),
    ]


def test_sst5_phrases_follow_each_sentence_in_bracket_order(tmp_path: Path) -> None:
    path = write(tmp_path, "trees.txt", "(1 (2 It) (0 (2 drags) (0 on)))\n")
    assert [(e.example_id, e.text, e.label) for e in read_sst(path, "sst5", phrases=True)] == [
        ("line-1", "It drags on", "1"),
        ("line-1/node-1", "It", "2"),
        ("line-1/node-2", "drags on", "0"),
        ("line-1/node-3", "drags", "2"),
        ("line-1/node-4", "on", "0"),
    ]


def test_sst2_phrases_skip_neutral_even_under_a_neutral_root(tmp_path: Path) -> None:
    path = write(tmp_path, "trees.txt", "(2 (2 Just) (2 (2 a) (1 movie)))\n(3 (3 Nice) (2 .))\n")
    assert [(e.example_id, e.text, e.label) for e in read_sst(path, "sst2", phrases=True)] == [
        ("line-1/node-4", "movie", "negative"),
        ("line-2", "Nice .", "positive"),
        ("line-2/node-1", "Nice", "positive"),
    ]


def test_sst_no_break_space_stays_inside_the_word(tmp_path: Path) -> None:
    path = write(tmp_path, "nbsp.txt", "(2 (2 runs) (2 (2 8\u00a01\\/2) (2 hours)))\n")
    (example,) = read_sst(path, "sst5")
    assert example.tokens == ["runs", "8\u00a01\\/2", "hours"]
    assert len("runs 8\u00a01\\/2 hours".split()) == 4  # what str.split() would have done


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("(3 (2 good) (2 fun)", "unbalanced brackets: 1 '(' not closed"),
        ("(3 (2 good) (2 fun)))", "unbalanced brackets: ')' closes nothing at column 21"),
        ("((2 good) (2 fun))", "missing label after '(' at column 2"),
        ("(3 (good) (2 fun))", "expected a label 0-4 after '(', got 'good' at column 5"),
        ("(7 (2 good) (2 fun))", "got '7'"),
        ("(3 (2 good) (2 fun)) extra", "text after the end of the tree at column 22"),
        ("(3 (2 good) (2 fun)) (2 x)", "text after the end of the tree"),
        ("good (2 fun)", "expected '(' to start a tree, got 'good'"),
        ("(3 (2 ) (2 fun))", "neither a word nor a subtree at column 4"),
        ("(3 (2 good fun))", "a leaf holds a second word 'fun'"),
        ("(3 (2 good) fun)", "both a subtree and a word 'fun'"),
        ("(3 fun (2 good))", "both a word and a subtree"),
    ],
)
def test_sst_bad_tree(tmp_path: Path, line: str, fragment: str) -> None:
    path = write(tmp_path, "bad.txt", "(2 (2 ok) (2 .))\n" + line + "\n")
    assert_error_at(error_of(lambda: read_sst(path)), path, 2, fragment)


def test_sst_bad_labels_argument() -> None:
    with pytest.raises(ValueError, match="labels"):
        read_sst("x.txt", "sst3")  # type: ignore[arg-type]


# Properties


@pytest.mark.parametrize("reader", READERS)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=300))
def test_arbitrary_bytes_give_examples_or_input_format_error(
    tmp_path: Path, reader: str, content: bytes
) -> None:
    path = write(tmp_path, _GOOD_FIRST_LINES[reader][0], content)
    try:
        examples = list(_readers(reader)(path))
    except InputFormatError as error:
        assert error.path == str(path)
        return
    assert examples


@pytest.mark.parametrize("reader", READERS)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.text(alphabet='(0123) abX\t\n-#{}[]",:_.\\', max_size=120))
def test_format_like_text_gives_examples_or_input_format_error(
    tmp_path: Path, reader: str, content: str
) -> None:
    path = write(tmp_path, _GOOD_FIRST_LINES[reader][0], content)
    try:
        list(_readers(reader)(path))
    except InputFormatError as error:
        assert error.path == str(path)


_TOKENS = st.text(
    alphabet=st.characters(
        blacklist_categories=["Cs"], blacklist_characters=" \t\n\r\x0b\x0c()\ufeff\x00"
    ),
    min_size=1,
    max_size=8,
).filter(lambda token: token != "-DOCSTART-")
_NER_TAGS = st.sampled_from(["O", "B-PER", "I-PER", "B-creative-work", "I-creative-work"])
_SENTENCES = st.lists(
    st.lists(st.tuples(_TOKENS, _NER_TAGS), min_size=1, max_size=6), min_size=1, max_size=5
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sentences=_SENTENCES, separator=st.sampled_from([" ", "\t"]), blank=st.sampled_from(["", "\t"])
)
def test_conll_reads_back_what_was_written(
    tmp_path: Path, sentences: list[list[tuple[str, str]]], separator: str, blank: str
) -> None:
    text = f"\n{blank}\n".join(
        "\n".join(f"{token}{separator}{tag}" for token, tag in sentence) for sentence in sentences
    )
    path = write(tmp_path, "gen.txt", text + "\n")
    read = list(read_conll(path))
    assert [s.tokens for s in read] == [[token for token, _ in s] for s in sentences]
    assert [s.tags for s in read] == [[tag for _, tag in s] for s in sentences]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sentences=_SENTENCES)
def test_jsonl_reads_back_what_was_written(
    tmp_path: Path, sentences: list[list[tuple[str, str]]]
) -> None:
    lines = [
        json.dumps({"tokens": [t for t, _ in s], "tags": [g for _, g in s]}) for s in sentences
    ]
    path = write(tmp_path, "gen.jsonl", "\n".join(lines) + "\n")
    assert [s.tokens for s in read_jsonl_tagged(path)] == [[t for t, _ in s] for s in sentences]


def _trees(leaves: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, list[str]]]:
    labels = st.sampled_from("01234")
    leaf = st.tuples(labels, leaves).map(lambda p: (f"({p[0]} {p[1]})", [p[1]]))
    return st.recursive(
        leaf,
        lambda children: st.tuples(labels, children, children).map(
            lambda p: (f"({p[0]} {p[1][0]} {p[2][0]})", p[1][1] + p[2][1])
        ),
        max_leaves=8,
    )


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=_trees(_TOKENS))
def test_sst_leaves_read_back(tmp_path: Path, tree: tuple[str, list[str]]) -> None:
    text, leaves = tree
    path = write(tmp_path, "gen.txt", text + "\n")
    (example,) = read_sst(path, "sst5")
    assert example.tokens == leaves
    assert example.label == text[1]


_CONLLU_FIELD = st.text(alphabet="0123-._|=:aB#", min_size=1, max_size=5)
_CONLLU_LINE = st.one_of(
    st.lists(_CONLLU_FIELD, min_size=10, max_size=10).map("\t".join),
    st.lists(_CONLLU_FIELD, min_size=1, max_size=11).map("\t".join),
    st.just(""),
    st.just("# newdoc id = d"),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_CONLLU_LINE, min_size=1, max_size=8))
def test_conllu_like_lines_give_sentences_or_input_format_error(
    tmp_path: Path, lines: list[str]
) -> None:
    # Ten columns of ID-, HEAD-, FEATS- and DEPS-like values reach the conllu package's parsers.
    path = write(tmp_path, "gen.conllu", "\n".join(lines) + "\n")
    try:
        sentences = list(read_conllu(path))
    except InputFormatError as error:
        assert error.path == str(path)
        assert error.line is None or 1 <= error.line <= len(lines)
        return
    assert all(s.tokens and len(s.tokens) == len(s.tags) for s in sentences)
