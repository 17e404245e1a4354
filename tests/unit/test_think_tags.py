"""`ThinkTagSplitter`: `<think>…</think>` at the start of streamed content becomes reasoning,
whatever the chunks, and text that only looks like a tag comes out unchanged."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.chat.think_tags import Piece, ThinkTagSplitter


def split(chunks: Iterable[str]) -> list[Piece]:
    """The pieces for `chunks`, adjacent pieces of one kind joined (as they fill one item)."""
    splitter = ThinkTagSplitter()
    pieces = [piece for chunk in chunks for piece in splitter.feed(chunk)]
    pieces += splitter.finish()
    joined: list[Piece] = []
    for piece in pieces:
        assert piece.text, "no empty pieces"
        if joined and joined[-1].kind == piece.kind:
            joined[-1] = Piece(piece.kind, joined[-1].text + piece.text)
        else:
            joined.append(piece)
    return joined


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "<think>\nThe user greets me.\n</think>\n\nHello!",
            [Piece("reasoning", "The user greets me.\n"), Piece("text", "Hello!")],
        ),
        ("  \n<think>a</think>b", [Piece("reasoning", "a"), Piece("text", "b")]),
        ("<think>all of it was reasoning", [Piece("reasoning", "all of it was reasoning")]),
        ("<think></think>Answer", [Piece("text", "Answer")]),
        ("<think>only</think>\n\n", [Piece("reasoning", "only")]),
        (
            "Answer <think>not at the start</think>",
            [Piece("text", "Answer <think>not at the start</think>")],
        ),
        ("<thinker>", [Piece("text", "<thinker>")]),
        ("<th", [Piece("text", "<th")]),
        ("  ", [Piece("text", "  ")]),
        (" <b>bold</b>", [Piece("text", " <b>bold</b>")]),
        (
            "<think>a</thinking> b</think>c",
            [Piece("reasoning", "a</thinking> b"), Piece("text", "c")],
        ),
        ("<think>x</th", [Piece("reasoning", "x</th")]),
        (
            "<think>1 < 2</think>3 <think>4</think>",
            [Piece("reasoning", "1 < 2"), Piece("text", "3 <think>4</think>")],
        ),
        ("", []),
    ],
)
def test_what_is_reasoning_and_what_is_text(content: str, expected: list[Piece]) -> None:
    assert split([content]) == expected


def test_tags_split_across_chunks() -> None:
    chunks = ["<th", "ink>", "Let me", " see.", "</", "thi", "nk>", "\n", "\n", "Yes", "."]

    assert split(chunks) == [Piece("reasoning", "Let me see."), Piece("text", "Yes.")]


def test_held_text_comes_out_as_soon_as_it_is_known() -> None:
    splitter = ThinkTagSplitter()

    assert splitter.feed(" <th") == []
    assert splitter.feed("is is text") == [Piece("text", " <this is text")]
    reasoning = ThinkTagSplitter()
    assert reasoning.feed("<think>abc</t") == [Piece("reasoning", "abc")]
    assert reasoning.feed("able>") == [Piece("reasoning", "</table>")]


# The same bounded search every run: a fixed seed, and nothing kept between runs.
SEARCH = settings(max_examples=300, derandomize=True, database=None, deadline=None)
# Text rich in whitespace and in pieces of both tags, so splits land inside tags often.
FRAGMENTS = st.sampled_from(
    ["<think>", "</think>", "<th", "ink>", "</", "think", ">", "<", " ", "\n", "a", "b c", "<b>"]
)
CONTENT = st.lists(FRAGMENTS, max_size=12).map("".join)


@st.composite
def content_and_chunks(draw: st.DrawFn) -> tuple[str, list[str]]:
    content = draw(CONTENT)
    cuts = sorted(draw(st.lists(st.integers(0, len(content)), max_size=8)))
    bounds = [0, *cuts, len(content)]
    return content, [content[a:b] for a, b in itertools.pairwise(bounds)]


@SEARCH
@given(content_and_chunks())
def test_any_split_of_the_same_content_gives_the_same_pieces(
    case: tuple[str, list[str]],
) -> None:
    content, chunks = case
    assert split(chunks) == split([content])


@SEARCH
@given(CONTENT)
def test_content_not_opened_by_think_comes_out_unchanged(content: str) -> None:
    if content.lstrip().startswith("<think>"):
        return
    assert split([content]) == ([Piece("text", content)] if content else [])


@SEARCH
@given(CONTENT, CONTENT)
def test_the_reasoning_is_what_the_tags_enclose(reasoning: str, answer: str) -> None:
    if "</think>" in reasoning:
        return
    pieces = split([f"<think>{reasoning}</think>{answer}"])
    expected = [Piece("reasoning", reasoning.lstrip()), Piece("text", answer.lstrip())]
    assert pieces == [piece for piece in expected if piece.text]
