"""Token log probabilities: a chat chunk's `logprobs.content` in the Responses API's shapes.

The Responses API has two: an `output_text` part's `logprobs` carry each token's UTF-8
`bytes`, its own and its alternatives' (the SDK's `ResponseOutputText.Logprob`); the
`logprobs` of the `response.output_text.delta` and `.done` events do not
(`ResponseTextDeltaEvent.Logprob`). Ferry keeps the part's shape and derives the events'.
"""

from __future__ import annotations

import math
from typing import Any

from app.shapes import JsonObject

# What OpenAI reports for a token the model all but ruled out. Some upstreams send -Infinity
# instead, which neither JSON nor Postgres' jsonb can hold.
LOGPROB_FLOOR = -9999.0


def chunk_logprobs(choice: JsonObject) -> list[JsonObject]:
    """The tokens a chunk's choice reports, as an `output_text` part's `logprobs` entries.

    An entry without a string `token` or a numeric `logprob` is left out: the SDK could not
    read it. Missing `bytes` are the token's UTF-8 encoding.
    """
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return []
    return [entry for raw in content if (entry := _part_entry(raw)) is not None]


def _part_entry(raw: Any) -> JsonObject | None:
    chosen = _token(raw)
    if chosen is None:
        return None
    alternatives = raw.get("top_logprobs")
    if not isinstance(alternatives, list):
        alternatives = []
    return {**chosen, "top_logprobs": [t for a in alternatives if (t := _token(a)) is not None]}


def _token(raw: Any) -> JsonObject | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("token"), str):
        return None
    logprob = raw.get("logprob")
    if isinstance(logprob, bool) or not isinstance(logprob, (int, float)):
        return None
    token: str = raw["token"]
    encoded = raw.get("bytes")
    if not _is_bytes(encoded):
        encoded = list(token.encode("utf-8", "replace"))
    finite = float(logprob) if math.isfinite(logprob) else LOGPROB_FLOOR
    return {"token": token, "bytes": encoded, "logprob": finite}


def _is_bytes(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
    )


def event_logprobs(entries: list[JsonObject]) -> list[JsonObject]:
    """Part entries as the text events carry them: token and logprob, no bytes."""
    return [
        {
            "token": entry["token"],
            "logprob": entry["logprob"],
            "top_logprobs": [
                {"token": t["token"], "logprob": t["logprob"]} for t in entry["top_logprobs"]
            ],
        }
        for entry in entries
    ]


def part_logprobs(entries: list[JsonObject]) -> list[JsonObject]:
    """Text-event entries back in the part's shape: what a stream's log shows of a message
    it left open. The bytes are the tokens' UTF-8 encoding, which is what the upstream sent
    for every token that is whole characters."""
    return [entry for raw in entries if (entry := _part_entry(raw)) is not None]
