"""How many tokens a model takes, and `truncation: "auto"`: a request fit into them by
dropping its oldest items.

A model's context size is the operator's (MODEL_CONTEXT_TOKENS) or else what the upstream's
`GET /models` reports as `max_model_len` (vLLM does), asked once per process. A model of
neither is not truncated: the upstream answers as it would with truncation "disabled".

What is dropped, oldest first, are whole units of the conversation: the instructions and
system or developer messages never; a reasoning item only with what follows it; a function
call only with its outputs (a tool result without its call is refused upstream); and never
the newest unit, which is what the model is asked to answer. The fewest oldest units go
that make the count fit the context less `max_output_tokens`; the count is the upstream's
own when it has a tokenizer endpoint (`token_count`), else the estimate, and the number of
units is found by halving (a handful of counts for hundreds of items).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from app.config import Settings
from app.engine.chat.client import UpstreamClient, UpstreamError
from app.engine.chat.messages import ChatMessage, to_chat_messages
from app.engine.token_count import TokenCount, TokenCounter
from app.shapes import Item, JsonObject

log = logging.getLogger(__name__)

# After a failed `GET /models`, how long before a process asks again.
LISTING_RETRY_S = 60.0
_PINNED_ROLES = frozenset({"system", "developer"})


class ContextWindow:
    """One per process: it remembers the upstream's model list once it has it."""

    def __init__(self, upstream: UpstreamClient, settings: Settings) -> None:
        self.counter = TokenCounter(upstream)
        self._upstream = upstream
        self._configured = settings.model_context_sizes
        self._send_reasoning = settings.upstream_send_reasoning
        self._listed: dict[str, int] | None = None
        self._listing_failed_at: float | None = None
        self._lock = asyncio.Lock()

    def messages(self, request: JsonObject, items: list[Item]) -> list[ChatMessage]:
        """The chat messages a request with these items sends (its instructions first)."""
        return to_chat_messages(
            request.get("instructions"), items, send_reasoning=self._send_reasoning
        )

    async def context_tokens(self, model: str | None) -> int | None:
        """The model's context size, if the settings or the upstream say it."""
        if model is None:
            return None
        if model in self._configured:
            return self._configured[model]
        return (await self._listing()).get(model)

    async def _listing(self) -> dict[str, int]:
        if self._listed is not None:
            return self._listed
        async with self._lock:
            if self._listed is not None:
                return self._listed
            failed_at = self._listing_failed_at
            if failed_at is not None and time.monotonic() - failed_at < LISTING_RETRY_S:
                return {}
            try:
                payload = await self._upstream.list_models()
            except UpstreamError as exc:
                log.warning("could not list the upstream's models", extra={"error": exc.message})
                self._listing_failed_at = time.monotonic()
                return {}
            self._listed = _context_sizes(payload)
            log.info("upstream models listed", extra={"context_sizes": self._listed})
            return self._listed

    async def fit(
        self, request: JsonObject, items: list[Item], tools: list[JsonObject] | None
    ) -> list[Item]:
        """`items` less the oldest units that keep the request from fitting the model's
        context (see the module's docstring); all of them when it fits or is not known.
        `tools` are the chat tools sent with it: they take room too."""
        model = request.get("model")
        limit = await self.context_tokens(model)
        if limit is None:
            return items
        budget = limit - (request.get("max_output_tokens") or 0)
        count = await self.counter.count(model, self.messages(request, items), tools)
        if count.tokens <= budget:
            return items
        units = droppable_units(items)

        async def count_without(first_units: int) -> TokenCount:
            kept = _without(items, _positions(units[:first_units]))
            return await self.counter.count(model, self.messages(request, kept), tools)

        # The fewest oldest units whose dropping makes it fit, found by halving: a count
        # never grows as units go. The newest unit stays whatever it costs.
        low, high = 1, len(units) - 1
        after = await count_without(high) if high >= low else count
        if after.tokens <= budget:
            while low < high:
                middle = (low + high) // 2
                middle_count = await count_without(middle)
                if middle_count.tokens <= budget:
                    high, after = middle, middle_count
                else:
                    low = middle + 1
        dropped = _positions(units[:high])
        _log_truncation(model, limit, budget, count, after, len(dropped))
        return _without(items, dropped)


def droppable_units(items: list[Item]) -> list[list[int]]:
    """The positions of `items` that are dropped together, oldest unit first; system and
    developer messages are in none."""
    units: list[list[int]] = []
    reasoning: list[int] = []  # reasoning items waiting for what follows them
    unit_of_call: dict[str, int] = {}
    for position, item in enumerate(items):
        kind = item.get("type")
        if kind == "message" and item.get("role") in _PINNED_ROLES:
            continue
        if kind == "reasoning":
            reasoning.append(position)
            continue
        call_id = item.get("call_id")
        if kind == "function_call_output" and call_id in unit_of_call:
            units[unit_of_call[call_id]] += [*reasoning, position]
        elif kind == "function_call" and _follows_a_call(items, units, position):
            units[-1] += [*reasoning, position]  # parallel calls of one turn
        else:
            units.append([*reasoning, position])
        reasoning = []
        if kind == "function_call" and isinstance(call_id, str):
            unit_of_call[call_id] = len(units) - 1
    if reasoning:
        units.append(reasoning)
    return [sorted(unit) for unit in units]


def _follows_a_call(items: list[Item], units: list[list[int]], position: int) -> bool:
    """Whether the item just before is a function call that ended the last unit."""
    if not units or units[-1][-1] != position - 1:
        return False
    return bool(items[position - 1].get("type") == "function_call")


def _positions(units: list[list[int]]) -> set[int]:
    return {position for unit in units for position in unit}


def _without(items: list[Item], dropped: set[int]) -> list[Item]:
    return [item for position, item in enumerate(items) if position not in dropped]


def _context_sizes(payload: JsonObject) -> dict[str, int]:
    """`{model id: max_model_len}` of a `/models` list, for the models that report one."""
    sizes: dict[str, int] = {}
    for model in payload.get("data") or []:
        if not isinstance(model, dict):
            continue
        model_id: Any = model.get("id")
        size: Any = model.get("max_model_len")
        if isinstance(model_id, str) and isinstance(size, int) and not isinstance(size, bool):
            if size > 0:
                sizes[model_id] = size
    return sizes


def _log_truncation(
    model: str | None, limit: int, budget: int, before: TokenCount, after: TokenCount, items: int
) -> None:
    log.info(
        "input truncated to fit the model's context",
        extra={
            "model": model,
            "context_tokens": limit,
            "budget_tokens": budget,
            "tokens_before": before.tokens,
            "tokens_after": after.tokens,
            "counted_upstream": after.exact,
            "items_dropped": items,
        },
    )
