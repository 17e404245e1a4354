"""What the console's live tail sends for each event, and how its pages render what responses
hold: as text, whatever it is."""

from __future__ import annotations

from types import SimpleNamespace

from app.engine.console_log import LONGEST_TEXT, event_line
from app.http.console.render import TEMPLATES, excerpt, seconds, usage_text

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_a_delta_keeps_its_whole_text() -> None:
    delta = "x" * (LONGEST_TEXT * 2)
    line = event_line(
        {
            "type": "response.output_text.delta",
            "sequence_number": 7,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": delta,
            "logprobs": [],
        }
    )
    assert line == {
        "seq": 7,
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "text": delta,
    }


def test_a_response_event_says_its_status_not_the_whole_response() -> None:
    response = {"id": "resp_1", "status": "failed", "output": [{"x": "y" * 10_000}]}
    response["error"] = {"code": "timeout", "message": "took too long"}
    line = event_line({"type": "response.failed", "sequence_number": 9, "response": response})
    assert line["text"] == "status failed: took too long"


def test_item_and_error_events_say_what_they_are() -> None:
    item = {"id": "fc_1", "type": "function_call", "name": "pay", "status": "completed"}
    added = event_line({"type": "response.output_item.done", "sequence_number": 3, "item": item})
    assert (added["item_id"], added["text"]) == ("fc_1", "function_call pay completed")
    error = {"type": "error", "code": "server_error", "message": "gone"}
    assert event_line({**error, "sequence_number": 4})["text"] == "server_error: gone"
    nested = {"type": "error", "sequence_number": 5, "error": {"code": "c", "message": "m"}}
    assert event_line(nested)["text"] == "c: m"
    long_text = event_line({"type": "response.output_text.done", "text": "y" * 2 * LONGEST_TEXT})
    assert len(long_text["text"]) == LONGEST_TEXT


def test_an_item_reads_as_one_line() -> None:
    message = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "hello\n  there"}, {"type": "input_image"}],
    }
    assert excerpt(message) == "user: hello there [input_image]"
    call = {"type": "function_call", "name": "pay", "arguments": '{"n": 1}'}
    assert excerpt(call) == 'function_call pay({"n": 1})'
    assert excerpt({"type": "message", "role": "user", "content": "z" * 500}).endswith("…")


def test_figures_read_as_a_person_reads_them() -> None:
    assert [seconds(v) for v in (None, 0.25, 42, 300, 7300)] == [
        "—",
        "0.25 s",
        "42 s",
        "5 min 0 s",
        "2 h 1 min",
    ]
    usage = {
        "input_tokens": 9,
        "output_tokens": 3,
        "total_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 2},
        "input_tokens_details": {"cached_tokens": 0},
    }
    assert usage_text(usage) == "in 9 · out 3 · total 12 · reasoning 2"


def test_templates_escape_what_responses_hold() -> None:
    error = SimpleNamespace(message=HOSTILE, param="status", code=HOSTILE)
    page = TEMPLATES.get_template("error.html").render(session=None, error=error, status=400)
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
