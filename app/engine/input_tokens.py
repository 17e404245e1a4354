"""`POST /v1/responses/input_tokens`: how many tokens a create with these parameters sends.

The count is of the chat request the model turn would send: the instructions, the
`previous_response_id` chain's items and the input (item references resolved, sealed items
opened), with the client's function tools and the registered ones; with `truncation:
"auto"`, after what truncation drops. MCP tools are not counted: listing them means calling
their servers. It is the upstream's own count where it offers one (`token_count`), else an
estimate; the answer does not say which.
"""

from __future__ import annotations

from typing import Any

from app.engine.chat.request import tool_fields
from app.engine.context_window import ContextWindow
from app.engine.errors import RequestError
from app.engine.history import HistoryStore, chain_items, check_previous
from app.engine.input_files import FileReader
from app.engine.input_items import invalid
from app.engine.input_resolution import resolve_input
from app.engine.request import parse_create_request
from app.engine.sealing import KeyRing
from app.engine.tools.mcp import check_mcp_urls
from app.engine.tools.registry import ToolRegistry
from app.shapes import Item, JsonObject

#: The parameters create has too, checked as create checks them.
SHARED_WITH_CREATE = frozenset(
    {
        "model",
        "input",
        "instructions",
        "previous_response_id",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "reasoning",
        "truncation",
    }
)
# The SDK's others: a conversation (not supported here) and a style the count ignores.
_OWN_PARAMETERS = frozenset({"conversation", "personality"})
PERSONALITY_MAX_CHARS = 64
# Stands in for a missing `model` while the rest is checked as create checks it; never sent.
_ANY_MODEL = "-"


def parse_input_tokens_request(body: Any) -> tuple[JsonObject, list[Item]]:
    """Validate a decoded JSON body; the request (as a create's is stored, `model` None when
    not given) and its input as normalised items."""
    if not isinstance(body, dict):
        raise RequestError(
            "The request body must be a JSON object.", param=None, code="invalid_json"
        )
    unknown = sorted(set(body) - SHARED_WITH_CREATE - _OWN_PARAMETERS)
    if unknown:
        raise RequestError(
            f"Unknown parameter: '{unknown[0]}'.", param=unknown[0], code="unknown_parameter"
        )
    if body.get("conversation") is not None:
        raise invalid(
            "conversation",
            "Counting the tokens of a conversation is not supported: send its items as 'input'.",
            "unsupported_parameter",
        )
    personality = body.get("personality")
    if personality is not None and not (
        isinstance(personality, str) and len(personality) <= PERSONALITY_MAX_CHARS
    ):
        raise invalid(
            "personality", f"Expected a string of at most {PERSONALITY_MAX_CHARS} characters."
        )
    model = body.get("model")
    shared = {key: value for key, value in body.items() if key in SHARED_WITH_CREATE}
    shared["model"] = _ANY_MODEL if model is None else model
    create, items = parse_create_request(shared)
    request = create.model_dump(mode="json", by_alias=True, exclude={"input"})
    request["model"] = model
    return request, items


class InputTokenCounter:
    def __init__(
        self,
        store: HistoryStore,
        keys: KeyRing,
        window: ContextWindow,
        tools: ToolRegistry,
        mcp_allowed: list[str],
        *,
        files: FileReader,
    ) -> None:
        self._files = files
        self._store = store
        self._keys = keys
        self._window = window
        self._tools = tools
        self._mcp_allowed = mcp_allowed

    async def count(self, owner: str, request: JsonObject, items: list[Item]) -> JsonObject:
        """`{"object": "response.input_tokens", "input_tokens": n}` for the owner's request."""
        self._tools.check_client_tools(request.get("tools"))
        check_mcp_urls(request.get("tools"), self._mcp_allowed)
        await check_previous(self._store, owner, request.get("previous_response_id"))
        items = await resolve_input(items, owner, self._store, self._keys, self._files)
        context = await chain_items(self._store, owner, request.get("previous_response_id"))
        context += items
        chat_tools = tool_fields(request, self._tools.offered_to(request)).get("tools")
        if request.get("truncation") == "auto":
            context = await self._window.fit(request, context, chat_tools)
        messages = self._window.messages(request, context)
        counted = await self._window.counter.count(request.get("model"), messages, chat_tools)
        return {"object": "response.input_tokens", "input_tokens": counted.tokens}
