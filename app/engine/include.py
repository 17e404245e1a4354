"""`include`: the extra output data a client may ask for, on create, GET and input_items.

The values are the SDK's `ResponseIncludable`. Each either works or is refused, so a client
never believes it asked for something it silently did not get:

- `message.output_text.logprobs`: the tokens' log probabilities on every `output_text`
  part and text event (see `app.engine.chat.logprobs`);
- `reasoning.encrypted_content`: accepted, for reasoning items;
- `message.input_image.image_url`: accepted, and changes nothing. OpenAI documents it as
  "include image urls from the input message": it shows them only when asked. Ferry keeps
  no image files, only the URL (or data URL) the client sent, which is the whole of the
  image: without it an `input_image` part would name no image at all and could not be
  sent back as input. So input_items always shows it.

The other values name outputs of OpenAI's built-in tools (file search, web search, computer
use, code interpreter), which Ferry does not have: a 400 naming `include[i]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from app.engine.errors import RequestError
from app.engine.input_items import unsupported
from app.shapes import JsonObject

# What the SDK may ask `include` for (its `ResponseIncludable`); anything else is a 400.
Includable = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]
INCLUDABLE: tuple[str, ...] = get_args(Includable)

LOGPROBS = "message.output_text.logprobs"
SUPPORTED = frozenset({LOGPROBS, "reasoning.encrypted_content", "message.input_image.image_url"})

# The built-in tool whose output each refused value names, by the value's first segment.
_BUILT_IN_TOOLS = {
    "file_search_call": "file_search",
    "web_search_call": "web_search",
    "computer_call_output": "computer_use_preview",
    "code_interpreter_call": "code_interpreter",
}


def check_include(values: Sequence[str]) -> None:
    """Refuse, naming `include[i]`, the first value that is not the SDK's or that Ferry
    cannot honour."""
    for index, value in enumerate(values):
        where = f"include[{index}]"
        if value not in INCLUDABLE:
            raise unsupported(where, value, INCLUDABLE)
        if value not in SUPPORTED:
            owner = value.split(".", 1)[0]
            tool = _BUILT_IN_TOOLS.get(owner, owner)
            raise RequestError(
                f"Unsupported value for '{where}': '{value}'. Ferry has no built-in "
                f"'{tool}' tool, so there is nothing of it to include.",
                param=where,
                code="unsupported_value",
            )


def wants_logprobs(request: JsonObject) -> bool:
    """Whether the stored create request asked for the output text's log probabilities."""
    return LOGPROBS in (request.get("include") or [])
