"""The benchmark's lean client counts tokens by a byte marker in a body that arrives in
pieces: a marker the network cuts in two is counted once, and none is counted twice."""

from __future__ import annotations

from bench.lean_client import MarkerCounter

TOKEN = b"event: response.output_text.delta\n"
END = b"event: response.completed\n"


def test_markers_cut_across_pieces_are_counted_once() -> None:
    body = (TOKEN + b"data: {}\n\n") * 5 + END + b"data: {}\n\n"
    for size in (1, 2, 7, len(TOKEN) - 1, len(TOKEN), 64, len(body)):
        counter = MarkerCounter((TOKEN, END))
        for start in range(0, len(body), size):
            counter.feed(body[start : start + size])
        assert counter.counts == [5, 1], size
        assert counter.first_at is not None


def test_no_marker_leaves_no_first_time() -> None:
    counter = MarkerCounter((TOKEN,))
    counter.feed(b"event: response.created\ndata: {}\n\n")
    assert counter.counts == [0]
    assert counter.first_at is None
