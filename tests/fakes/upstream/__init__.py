"""The fake upstream: the test suite's fault-injecting chat-completions server.

It speaks the real OpenAI chat-completions wire protocol (JSON bodies, SSE chunks, error
envelopes), so Ferry's upstream client is exercised exactly as against vLLM or OpenAI; but
its answers are a pure function of the request, and directives in the prompt make it fail
in each way a real upstream can. It needs no API key and no network. It is a test fixture,
not product: ``python -m app.demo`` is the small demo upstream for people trying Ferry.

Modules: :mod:`.directives` (parsing the ``[[...]]`` directives), :mod:`.replies` (what the
fake model answers), :mod:`.app` (the HTTP surface, faults and the request spy) and
:mod:`.spy` (reading the request spy from a test).

Surface
-------
``create_app()`` returns a Starlette app with these routes:

* ``POST /chat/completions`` and ``POST /v1/chat/completions`` - the completion endpoint,
  streaming (SSE, OpenAI wire format) or not.
* ``GET /models`` and ``GET /v1/models`` - an OpenAI list of the model ``demo`` and the model
  ``demo-small``, which reports a context size as vLLM does (``max_model_len``: 60) (any
  ``model`` name is accepted by the completion endpoint and echoed back, though).
* ``POST /tokenize`` - vLLM's tokenizer endpoint, at the root as vLLM serves it: for
  ``{"model", "messages"}`` it answers ``{"count", "max_model_len", "tokens"}``, the count
  being the prompt tokens of usage (words, at least 1).
* ``GET /_demo/requests`` - the request spy: the completion requests received so far,
  oldest first, at most the last 200:
  ``[{"headers": {"authorization": str | None}, "body": <parsed JSON>, "stream": ...,
  "peer": "host:port"}, ...]`` where ``stream`` is None for a non-streaming request, else
  ``"open"``, ``"finished"`` or ``"abandoned"`` (the client hung up before the end), and
  ``peer`` is the client's end of the connection the request came on.
* ``DELETE /_demo/requests`` - forget them.

The spy's path and the error messages ("demo upstream error 503", "demo upstream failed
mid-stream") keep the names they had when this server was also the demo: tests match on them.

Replies
-------
* Last message from ``user``: ``"Hello! You said: <its text>"``, with ``[[...]]`` directives
  removed and whitespace collapsed.
* Last message from ``tool``: ``"Tool results: name=content; ..."`` over the trailing run of
  tool messages.
* Anything else: ``"Hello!"``.

The reply is split into word tokens (``\\S+\\s*``), one streamed chunk each; ``max_tokens`` /
``max_completion_tokens`` truncate it with ``finish_reason="length"``.

With ``logprobs: true`` each chunk carrying text has ``logprobs.content`` with one entry for
its token (``replies.token_logprobs``: a log probability of minus a tenth of the token's
length, its UTF-8 ``bytes``, and ``top_logprobs`` alternatives, the token first); otherwise
``logprobs`` is null, as OpenAI sends it. ``top_logprobs`` outside 0-20, or without
``logprobs: true`` (which OpenAI documents it needs), is a 400.

Directives (only read from the most recent ``user`` message)
----------------------------------------------------------
* ``[[call:NAME {"json": "args"}]]`` - answer with a call to tool NAME (must be in ``tools``;
  ``tool_choice`` must not be ``"none"``; only when that user message is the last message, so
  a tool-result turn always gets a text answer and agent loops terminate). Repeatable.
  ``tool_choice="required"`` or a named function forces a call with ``{}`` args when there
  is no directive.
* ``[[then-call:NAME {"json": "args"}]]`` - after every tool result, call NAME again (a
  model that never stops calling tools; each round has fresh call ids).
* ``[[status:CODE]]`` - fail the request with HTTP CODE (400-599) and an OpenAI error body.
* ``[[then-status:CODE]]`` - fail with HTTP CODE only a request whose last message is a
  tool result: the model turn after tools ran (with ``call``).
* ``[[fail-first:N:CODE]]`` - fail the first N requests whose last user message has the same
  visible text (directives removed) with HTTP CODE (400-599, default 503) and an OpenAI error
  body; later ones are answered normally. Counted per app, so a client's retries can be
  exercised end to end.
* ``[[cut-first:N]]`` - the first N requests whose last user message has the same visible
  text are cut off after the first tokens, as ``[[cut]]``; later ones stream normally.
* ``[[retry-after:S]]`` - with ``status`` or ``fail-first``: send ``Retry-After: S``
  (seconds, decimals allowed) on those failures.
* ``[[error-message:TEXT]]`` / ``[[error-code:CODE]]`` - with ``status`` or ``fail-first``:
  the error body's ``message`` (instead of ``demo upstream error CODE``) and ``code``
  (instead of null). TEXT runs to the closing brackets and may hold spaces and colons.
* ``[[cut]]`` - stream the first half of the chunks, then end the body (no finish, no
  ``[DONE]``).
* ``[[empty]]`` - 200 with an empty body.
* ``[[mid-error]]`` - first half of the chunks, then an ``{"error": ...}`` data line, then end.
* ``[[no-usage]]`` - never report usage.
* ``[[anthropic-usage]]`` - report usage in Anthropic's field names.
* ``[[reasoning]]`` - report 5 reasoning tokens and 2 cached prompt tokens.
* ``[[think]]``, ``[[think:reasoning_content]]``, ``[[think:reasoning]]``,
  ``[[think:tags]]`` - think before answering (every turn: after a tool result too):
  ``"Thinking about: <visible text>"`` (``"Thinking about the tool results."`` after tool
  messages), streamed word by word before the answer or the calls, in the delta field
  ``reasoning_content`` (the default) or ``reasoning``, or with ``tags`` as content between
  ``<think>`` and ``</think>\n\n`` (each tag split across two chunks). Non-streaming replies
  carry it in the message's field, or in its content. The words count as completion tokens,
  and (not with ``tags``, as no reasoning parser sets them apart) as reasoning tokens.
* ``[[no-stream]]`` - answer a streaming request with a plain JSON completion
  (``application/json``), as upstreams that ignore ``stream`` do.
* ``[[delay:MS]]`` - sleep MS milliseconds between streamed chunks.

Unknown ``[[...]]`` directives are removed from the echoed text and otherwise ignored.
"""

from tests.fakes.upstream.app import MAX_RECORDED_REQUESTS, create_app
from tests.fakes.upstream.directives import Directives, parse_directives, split_directives

__all__ = [
    "MAX_RECORDED_REQUESTS",
    "Directives",
    "create_app",
    "parse_directives",
    "split_directives",
]
