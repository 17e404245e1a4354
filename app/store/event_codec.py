"""How a batch of events is stored in one row of the event log.

A streamed token is one event of ~170 bytes of JSON, almost all of it repeated from the
event before (type, item id, indexes). Compressing a batch with zlib and a preset dictionary
of those repeated strings brings it to a few bytes per event even for small batches, which
plain zlib (or Postgres' TOAST, which compresses only rows over 2 kB) does not.

A codec number is stored beside each batch, so a codec is never changed once rows use it:
a better dictionary is a new codec, and the old one stays readable.
"""

from __future__ import annotations

import zlib
from enum import IntEnum

import orjson

from app.shapes import Event


class Codec(IntEnum):
    JSON = 0  # a plain JSON array: rows moved from the one-row-per-event log
    ZLIB_PRESET_1 = 1  # that array, zlib-compressed with _PRESET_1


# What most events repeat, most frequent last (zlib finds nearer matches cheaper). Frozen:
# rows encoded with it can only be decoded with exactly these bytes.
_PRESET_1 = (
    b'{"type":"response.created","sequence_number":0,"response":{"id":"resp_'
    b'","object":"response","created_at":,"status":"in_progress","background":true,'
    b'"error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,'
    b'"model":"","output":[],"parallel_tool_calls":true,"previous_response_id":null,'
    b'"reasoning":null,"store":true,"temperature":null,"text":{"format":{"type":"text"}},'
    b'"tool_choice":"auto","tools":[],"top_p":null,"truncation":"disabled","usage":null,'
    b'"metadata":{}}},{"type":"response.in_progress","sequence_number":1,'
    b'{"type":"response.completed","sequence_number":,"usage":{"input_tokens":'
    b'"output_tokens":,"total_tokens":,"input_tokens_details":{"cached_tokens":0},'
    b'"output_tokens_details":{"reasoning_tokens":0}}'
    b'{"type":"response.function_call_arguments.delta","sequence_number":,"item_id":"fc_'
    b'{"type":"response.reasoning_text.delta","sequence_number":,"item_id":"rs_'
    b'{"type":"response.output_item.added","sequence_number":,"output_index":0,"item":'
    b'{"id":"msg_","type":"message","status":"in_progress","role":"assistant","content":[]}}'
    b'{"type":"response.content_part.added","sequence_number":,"item_id":"msg_",'
    b'"output_index":0,"content_index":0,"part":{"type":"output_text","text":"",'
    b'"annotations":[],"logprobs":[]}}'
    b'{"type":"response.output_text.done","sequence_number":,"item_id":"msg_",'
    b'"output_index":0,"content_index":0,"text":"","logprobs":[]}'
    b'{"type":"response.output_text.delta","sequence_number":,"item_id":"msg_",'
    b'"output_index":0,"content_index":0,"delta":" ","logprobs":[]},'
    b'{"type":"response.output_text.delta","sequence_number":,"item_id":"msg_",'
    b'"output_index":0,"content_index":0,"delta":" ","logprobs":[]}'
)


def encode(events: list[Event]) -> tuple[Codec, bytes]:
    """The stored form of `events`: the codec new rows use, and the bytes."""
    compressor = zlib.compressobj(level=6, zdict=_PRESET_1)
    blob = compressor.compress(orjson.dumps(events)) + compressor.flush()
    return Codec.ZLIB_PRESET_1, blob


def decode(codec: int, blob: bytes) -> list[Event]:
    """The events of one stored batch, in order."""
    if codec == Codec.JSON:
        events: list[Event] = orjson.loads(blob)
        return events
    if codec == Codec.ZLIB_PRESET_1:
        decompressor = zlib.decompressobj(zdict=_PRESET_1)
        events = orjson.loads(decompressor.decompress(blob) + decompressor.flush())
        return events
    raise ValueError(f"unknown event codec {codec}")
