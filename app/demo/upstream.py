"""The demo upstream: a small chat-completions server to try Ferry with, no model needed.

Started by `python -m app dev` when UPSTREAM_BASE_URL is unset, and by compose. No network, no
key; each answer is a pure function of the request. It echoes the last user message ("Hello!
You said: <text>", streamed word by word); given `reasoning_effort`, it first streams a short
reasoning delta, as `reasoning_content` (the vLLM/DeepSeek convention) or, for a model whose
name contains "reasoning", as `reasoning` (newer vLLM, OpenRouter, Ollama); when the last user
message names an offered tool, it calls that tool with the message's first JSON object (or
`{}`) as arguments (with `--call-first-tool`, a message that names none calls the first tool
offered). Asked for `logprobs`, it reports made-up but steady ones for each word it
streams (and `top_logprobs` alternatives), in the chat-completions shape. Its model list
gives the model a context size, as vLLM does (`max_model_len`); it has no `/tokenize`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

JSON = dict[str, Any]
THOUGHT = "Let me read the last message and answer it plainly."
NAMED = r"(?<![\w-]){}(?![\w-])"  # a tool name as a whole word; names may contain "-"
PACE_S = 0.05  # between chunks, so someone watching sees the words arrive one by one
CREATED = 1_700_000_000  # not the clock: equal requests get equal replies
CONTEXT_TOKENS = 8192  # reported as vLLM reports a model's context size, `max_model_len`


def text_of(message: JSON) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: only the text parts have words
        return " ".join(p["text"] for p in content if isinstance(p, dict) and "text" in p)
    return content if isinstance(content, str) else ""


def tool_call(body: JSON, text: str, *, first_offered: bool = False) -> JSON | None:
    """A call to the offered tool `text` names first (or, told `first_offered`, to the first
    tool offered when it names none), with the first JSON object in `text` as arguments."""
    functions = [t.get("function") for t in body.get("tools") or [] if isinstance(t, dict)]
    names = [f["name"] for f in functions if isinstance(f, dict) and isinstance(f.get("name"), str)]
    spots = [(m.start(), n) for n in names if (m := re.search(NAMED.format(re.escape(n)), text))]
    if not spots and first_offered and names:
        spots = [(0, names[0])]
    if not spots or body.get("tool_choice") == "none":
        return None
    arguments: JSON = {}
    for brace in re.finditer(r"\{", text):  # the first "{" that opens valid JSON
        with contextlib.suppress(ValueError):
            arguments = json.JSONDecoder().raw_decode(text, brace.start())[0]
            break
    call_id = "call_" + hashlib.sha256(text.encode()).hexdigest()[:24]
    function = {"name": min(spots)[1], "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


def reply_text(messages: list[JSON]) -> str:
    if messages[-1].get("role") == "tool":  # answer the results of the last calls
        results = itertools.takewhile(lambda m: m.get("role") == "tool", reversed(messages))
        return "Tool results: " + "; ".join(reversed([text_of(m) for m in results]))
    user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    return "Hello! You said: " + " ".join(text_of(user).split())


def logprob_of(token: str) -> float:
    """A made-up log probability between -2 and 0: the same token always gets the same."""
    return -round(int(hashlib.sha256(token.encode()).hexdigest()[:4], 16) / 0xFFFF * 2, 4)


def token_logprobs(token: str, top: int) -> JSON:
    """A chat `logprobs.content` entry for `token`, with `top` alternatives: the token
    itself, then less likely spellings of it."""
    alternatives = [token] + [f"{token.rstrip()}{'~' * n}" for n in range(1, top)]
    chosen = logprob_of(token)
    top_logprobs = [
        {"token": t, "logprob": round(chosen - n, 4), "bytes": list(t.encode())}
        for n, t in enumerate(alternatives[:top])
    ]
    return {
        "token": token,
        "logprob": chosen,
        "bytes": list(token.encode()),
        "top_logprobs": top_logprobs,
    }


def logprobs_asked(body: JSON) -> int | None:
    """How many alternatives each token's logprobs carry; None when none were asked for."""
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) and not isinstance(top, bool) and 0 <= top <= 20 else 0


def reasoning_field(body: JSON) -> str:
    """Where the reasoning goes: both names are in use, so the model name picks one."""
    model = body.get("model")
    return "reasoning" if isinstance(model, str) and "reasoning" in model else "reasoning_content"


def answer(
    body: JSON, messages: list[JSON], *, first_offered: bool = False
) -> tuple[JSON, list[JSON], JSON]:
    """The assistant message, the deltas that stream it, and the usage."""
    call = None
    if messages[-1].get("role") == "user":
        call = tool_call(body, text_of(messages[-1]), first_offered=first_offered)
    message: JSON = {"role": "assistant", "content": None if call else reply_text(messages)}
    if call is not None:
        message["tool_calls"] = [call]
        head = {"index": 0, **call, "function": {**call["function"], "arguments": ""}}
        tail = {"index": 0, "function": {"arguments": call["function"]["arguments"]}}
        deltas: list[JSON] = [{"tool_calls": [head]}, {"tool_calls": [tail]}]
    else:
        deltas = [{"content": word} for word in re.findall(r"\S+\s*", message["content"])]
    prompt = max(1, sum(len(text_of(m).split()) for m in messages))
    reasoning = len(THOUGHT.split()) if body.get("reasoning_effort") not in (None, "none") else 0
    completion = reasoning + len(deltas)  # a token per word thought and per piece streamed
    if reasoning:
        message[reasoning_field(body)] = THOUGHT
        deltas.insert(0, {reasoning_field(body): THOUGHT})
    deltas[0] = {"role": "assistant", **deltas[0]}
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage |= {"total_tokens": prompt + completion}
    return message, deltas, usage | {"completion_tokens_details": {"reasoning_tokens": reasoning}}


async def completions(request: Request) -> Response:
    raw = await request.body()
    try:
        body = json.loads(raw)
        messages = [m for m in body["messages"] if isinstance(m, dict)]
    except (ValueError, TypeError, KeyError):  # not JSON, not an object, or no messages
        body, messages = {}, []
    if not messages:
        error = {"message": "'messages' must be a non-empty array", "type": "invalid_request_error"}
        return JSONResponse({"error": error | {"param": "messages", "code": None}}, status_code=400)
    message, deltas, usage = answer(body, messages, first_offered=request.app.state.call_first_tool)
    finish = "tool_calls" if "tool_calls" in message else "stop"
    head = {"id": f"chatcmpl-{hashlib.sha256(raw).hexdigest()[:24]}", "created": CREATED}
    head |= {"model": body.get("model") or "demo", "object": "chat.completion"}
    top = logprobs_asked(body)
    if body.get("stream") is not True:
        choice = {"index": 0, "message": message, "finish_reason": finish}
        if top is not None:
            words = [d["content"] for d in deltas if d.get("content")]
            choice["logprobs"] = {
                "content": [token_logprobs(w, top) for w in words],
                "refusal": None,
            }
        return JSONResponse({**head, "choices": [choice], "usage": usage})
    head["object"] = "chat.completion.chunk"
    choices: list[Any] = [{"index": 0, "delta": d, "finish_reason": None} for d in deltas]
    if top is not None:
        for choice in choices:
            content = choice["delta"].get("content")
            tokens = [token_logprobs(content, top)] if content else []
            choice["logprobs"] = {"content": tokens, "refusal": None}
    choices.append({"index": 0, "delta": {}, "finish_reason": finish})
    chunks = [{**head, "choices": [choice]} for choice in choices]
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        chunks.append({**head, "choices": [], "usage": usage})

    async def sse() -> AsyncIterator[bytes]:
        for n, chunk in enumerate(chunks):
            await asyncio.sleep(request.app.state.pace_s if n else 0)
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream")


async def models(request: Request) -> Response:
    demo = {"id": "demo", "object": "model", "created": CREATED, "owned_by": "ferry"}
    demo["max_model_len"] = CONTEXT_TOKENS
    return JSONResponse({"object": "list", "data": [demo]})


def create_app(pace_s: float = PACE_S, *, call_first_tool: bool = False) -> Starlette:
    """`call_first_tool`: a user message that names no offered tool calls the first one
    (as a model asked about the weather with a weather tool at hand would)."""
    routes = [Route("/chat/completions", completions, methods=["POST"]), Route("/models", models)]
    app = Starlette(routes=[*routes, Mount("/v1", routes=routes)])
    app.state.pace_s = pace_s
    app.state.call_first_tool = call_first_tool
    return app
