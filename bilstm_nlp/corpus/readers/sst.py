"""Stanford Sentiment Treebank PTB-tree files: one labelled binary tree per line.

A reader of the first stage. Each line is a tree whose nodes are `(LABEL child child)` and whose
leaves are `(LABEL word)`, LABEL in 0-4; the root label is the sentence label. The brackets are
parsed here, and words end only at an ASCII space or a bracket, so a NO-BREAK SPACE inside a word
(three leaves of train, such as `8\\xa01\\/2`) stays in it (`str.split()` would cut it in two).

Labels: SST-5 keeps the digits as label strings `"0"`..`"4"` (0 very negative ... 4 very positive).
SST-2 drops neutral (2) and maps 0, 1 to `"negative"` and 3, 4 to `"positive"`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputFormatError
from . import TextExample
from ._lines import excerpt, is_blank, read_lines

SST_LABELS = ("sst5", "sst2")
NODE_LABELS = ("0", "1", "2", "3", "4")
_SST2 = {"0": "negative", "1": "negative", "3": "positive", "4": "positive"}


@dataclass
class _Node:
    label: str
    column: int  # 1-based column of the node's "(", for error messages
    start: int  # index of its first leaf
    end: int = -1  # index past its last leaf
    word: str | None = None
    children: list[_Node] = field(default_factory=list)


def read_sst(
    path: str | Path, labels: str = "sst5", phrases: bool = False
) -> Iterator[TextExample]:
    """Sentences (and optionally phrases) of an SST tree file with their sentiment labels.

    Args:
        path: the file.
        labels: `"sst5"` (labels `"0"`..`"4"`) or `"sst2"` (`"negative"`/`"positive"`, neutral
            sentences dropped).
        phrases: also yield, right after each sentence, every other node of its tree (inner phrases
            and single-word leaves, in bracket order) as an example of its own; with SST-2 only the
            non-neutral ones, and also for a sentence whose neutral root is dropped.
    Returns:
        An iterator of `TextExample`s with `tokens` the leaves, `text` the leaves joined by spaces,
        `example_id` `"line-N"` for a sentence and `"line-N/node-K"` for its phrase K (K counts the
        nodes in bracket order, the root being 0), `line` the tree's line.
    Raises:
        ValueError: `labels` is neither `"sst5"` nor `"sst2"`.
        InputFormatError: at the first bad line: unbalanced brackets, a missing or bad label, a
            node with neither a word nor children, text after the tree, bad UTF-8; a missing or
            empty file.
    """
    if labels not in SST_LABELS:
        raise ValueError(f"labels must be one of {SST_LABELS}, got {labels!r}")
    return _read_sst(path, labels, phrases)


def _read_sst(path: str | Path, labels: str, phrases: bool) -> Iterator[TextExample]:
    trees = 0
    for number, line in read_lines(path):
        if is_blank(line):
            continue
        nodes, leaves = _parse_tree(line, path, number)
        trees += 1
        root = nodes[0]
        label = _label(root.label, labels)
        if label is not None:
            yield TextExample(" ".join(leaves), leaves, label, f"line-{number}", number)
        if not phrases:
            continue
        for index, node in enumerate(nodes[1:], start=1):
            phrase_label = _label(node.label, labels)
            if phrase_label is None:
                continue
            words = leaves[node.start : node.end]
            yield TextExample(
                " ".join(words), words, phrase_label, f"line-{number}/node-{index}", number
            )
    if trees == 0:
        raise InputFormatError("empty file: no sentences", path)


def _label(node_label: str, labels: str) -> str | None:
    if labels == "sst5":
        return node_label
    return _SST2.get(node_label)


def _parse_tree(line: str, path: str | Path, number: int) -> tuple[list[_Node], list[str]]:
    """The nodes of one tree in bracket order (root first) and its leaves."""
    nodes: list[_Node] = []
    leaves: list[str] = []
    stack: list[_Node] = []
    closed = False
    position, length = 0, len(line)

    def fail(message: str, column: int) -> InputFormatError:
        return InputFormatError(f"{message} at column {column}: {excerpt(line)}", path, number)

    while position < length:
        char = line[position]
        if char == " ":
            position += 1
            continue
        if closed and char != ")":
            raise fail("text after the end of the tree", position + 1)
        if char == "(":
            label_end = _atom_end(line, position + 1)
            label = line[position + 1 : label_end]
            if not label:
                raise fail("missing label after '('", position + 2)
            if label not in NODE_LABELS:
                raise fail(f"expected a label 0-4 after '(', got {label!r}", position + 2)
            node = _Node(label, position + 1, len(leaves))
            if stack:
                parent = stack[-1]
                if parent.word is not None:
                    raise fail("a node holds both a word and a subtree", position + 1)
                parent.children.append(node)
            nodes.append(node)
            stack.append(node)
            position = label_end
        elif char == ")":
            if not stack:
                raise fail("unbalanced brackets: ')' closes nothing", position + 1)
            node = stack.pop()
            if node.word is None and not node.children:
                raise fail("a node with neither a word nor a subtree", node.column)
            node.end = len(leaves)
            closed = not stack
            position += 1
        else:
            word_end = _atom_end(line, position)
            word = line[position:word_end]
            if not stack:
                raise fail(f"expected '(' to start a tree, got {word!r}", position + 1)
            node = stack[-1]
            if node.word is not None:
                raise fail(f"a leaf holds a second word {word!r}", position + 1)
            if node.children:
                raise fail(f"a node holds both a subtree and a word {word!r}", position + 1)
            node.word = word
            leaves.append(word)
            position = word_end
    if stack:
        raise InputFormatError(
            f"unbalanced brackets: {len(stack)} '(' not closed at the end of the line "
            f"(the first at column {stack[0].column}): {excerpt(line)}",
            path,
            number,
        )
    return nodes, leaves


def _atom_end(line: str, position: int) -> int:
    # Labels and words end at an ASCII space or a bracket, nothing else.
    while position < len(line) and line[position] not in " ()":
        position += 1
    return position
