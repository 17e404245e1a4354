"""`POST /v1/responses/compact`: a long conversation made short enough to go on with.

The context — the `previous_response_id` chain's items, then `input`, after `instructions` —
is sent to the upstream model with SUMMARY_REQUEST as a last user message, in one chat
completion; its answer is the summary. The compacted window is what OpenAI's is: every user
message of the context as it was, then one `compaction` item whose `encrypted_content`
seals the summary (the sealing of reasoning, as another kind, bound to the API key and the
item id). Sent back as input, the item is opened when the request is accepted and reaches
the model as a user message holding the summary (`chat.messages`).

Nothing is stored: the window is the client's to carry, as with OpenAI's endpoint, and its
`id` names no response.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from pydantic import Field, ValidationError

from app import ids
from app.config import Settings
from app.engine.chat.client import UpstreamClient, UpstreamError
from app.engine.chat.messages import ChatMessage
from app.engine.chat.think_tags import ThinkTagSplitter
from app.engine.chat.usage import responses_usage
from app.engine.context_window import ContextWindow
from app.engine.errors import RequestError, UpstreamFailed, UpstreamRefused
from app.engine.history import HistoryStore, chain_items, check_previous
from app.engine.input_files import FileReader
from app.engine.input_items import normalise_input
from app.engine.input_resolution import resolve_input
from app.engine.items import compaction_item
from app.engine.request import RequestBody, error_from_validation
from app.engine.sealing import KeyRing, SealKind
from app.shapes import Item, JsonObject, Usage

log = logging.getLogger(__name__)

#: The last message of the summary request: what the model is asked to write.
SUMMARY_REQUEST = (
    "Write a summary of the conversation so far, to be used in its place when the "
    "conversation continues. Keep what is needed to go on: the user's goals, requests and "
    "constraints; what was decided; the facts, names, numbers, code and file paths that "
    "matter; the tools called and what they returned; and what remains to be done. Do not "
    "answer or continue the conversation: write only the summary."
)
#: The usage reported when the upstream reports none: OpenAI's shape, every count 0.
NO_USAGE: Usage = {
    "input_tokens": 0,
    "output_tokens": 0,
    "total_tokens": 0,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens_details": {"reasoning_tokens": 0},
}


class CompactRequest(RequestBody):
    """The parameters of POST /v1/responses/compact. The prompt cache, service tier and
    image options are accepted and not acted on: no chat upstream takes them."""

    model: str = Field(min_length=1)
    input: str | list[JsonObject] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    prompt_cache_key: str | None = Field(default=None, max_length=64)
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: JsonObject | None = None
    service_tier: Literal["auto", "default", "fast", "flex", "priority"] | None = None
    image: JsonObject | None = None


def parse_compact_request(body: Any) -> tuple[CompactRequest, list[Item]]:
    """Validate a decoded JSON body; the request and its input as normalised items."""
    if not isinstance(body, dict):
        raise RequestError(
            "The request body must be a JSON object.", param=None, code="invalid_json"
        )
    try:
        request = CompactRequest.model_validate(body)
    except ValidationError as exc:
        raise error_from_validation(exc) from None
    items = normalise_input(request.input)
    if not items and request.previous_response_id is None:
        raise RequestError(
            "Nothing to compact: give 'input' or 'previous_response_id'.",
            param="input",
            code="missing_required_parameter",
        )
    return request, items


class Compactor:
    def __init__(
        self,
        store: HistoryStore,
        upstream: UpstreamClient,
        keys: KeyRing,
        window: ContextWindow,
        settings: Settings,
        *,
        files: FileReader,
    ) -> None:
        self._store = store
        self._upstream = upstream
        self._keys = keys
        self._window = window
        self._think_tags = settings.think_tags_as_reasoning
        self._files = files

    async def compact(self, owner: str, request: CompactRequest, items: list[Item]) -> JsonObject:
        """The compacted window of the owner's context, as a `response.compaction`."""
        await check_previous(self._store, owner, request.previous_response_id)
        items = await resolve_input(items, owner, self._store, self._keys, self._files)
        context = await chain_items(self._store, owner, request.previous_response_id) + items
        messages = self._window.messages({"instructions": request.instructions}, context)
        messages.append({"role": "user", "content": SUMMARY_REQUEST})
        summary, usage = await self._summary(request.model, messages)
        item_id = ids.new_id("cmp")
        sealed = (await self._keys.sealer()).seal(owner, item_id, summary, SealKind.COMPACTION)
        user_messages = [item for item in context if _is_user_message(item)]
        log.info(
            "conversation compacted",
            extra={"items": len(context), "kept": len(user_messages), "chars": len(summary)},
        )
        return {
            "id": ids.response_id(),
            "object": "response.compaction",
            "created_at": int(time.time()),
            "output": [*user_messages, compaction_item(item_id, sealed)],
            "usage": usage or NO_USAGE,
        }

    async def _summary(self, model: str, messages: list[ChatMessage]) -> tuple[str, Usage | None]:
        """The model's summary (its text: reasoning is left out) and the usage it reported."""
        body: JsonObject = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        pieces: list[str] = []
        usage: Usage | None = None
        try:
            async for chunk in self._upstream.stream_chat(body):
                usage = responses_usage(chunk.get("usage")) or usage
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if isinstance(content, str):
                        pieces.append(content)
        except UpstreamError as exc:
            raise _failure(exc) from None
        summary = self._answer_text("".join(pieces)).strip()
        if not summary:
            raise UpstreamFailed(
                "The upstream model wrote no summary of the conversation.", code="upstream_error"
            )
        return summary, usage

    def _answer_text(self, content: str) -> str:
        """The content without the `<think>` reasoning it opens with, when models write their
        reasoning so (THINK_TAGS_AS_REASONING)."""
        if not self._think_tags:
            return content
        splitter = ThinkTagSplitter()
        pieces = [*splitter.feed(content), *splitter.finish()]
        return "".join(piece.text for piece in pieces if piece.kind == "text")


def _is_user_message(item: Item) -> bool:
    return item.get("type") == "message" and item.get("role") == "user"


def _failure(exc: UpstreamError) -> RequestError:
    """The error the client gets: the upstream's refusal (a 4xx) as it said it, as a blocking
    create's; any other failure a 502."""
    refusal = exc.refusal
    if refusal is not None and 400 <= refusal["status"] < 500:
        return UpstreamRefused(refusal, response_id=None)
    return UpstreamFailed(f"The upstream model could not summarise: {exc.message}", code=exc.code)
