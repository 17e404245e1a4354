"""MCP approvals: a call that waits for a person's yes, and what becomes of the answer.

A remote MCP tool whose `require_approval` selects it (see `ApprovalPolicy`) is not called
when the model asks: its call ends the turn as an `mcp_approval_request` item, and the
response completes there. The client answers with an `mcp_approval_response` input item on
a response that continues the first (`previous_response_id`, or the same conversation):

- approved, the call runs first thing in that response, as a durable tool step whose
  `mcp_call` item carries the `approval_request_id`; its item id is derived from the two
  ids, so a run resumed after a crash finds the call it already made (and never makes a
  finished one again) and completes a cut-off one in place;
- denied, nothing runs; the model reads the refusal as the call's result
  (`app.engine.chat.messages`).

An answer must name a request of the conversation it continues, once: anything else is a
400 naming `input[i].approval_request_id`, checked before the response is accepted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable

from app import ids
from app.engine.errors import RequestError
from app.engine.history import ResponseFinder, chain_items
from app.shapes import Item, JsonObject

APPROVAL_REQUEST = "mcp_approval_request"
APPROVAL_RESPONSE = "mcp_approval_response"


def approval_request(server_label: str, name: str) -> Item:
    """The item a call that waits for approval is streamed as, its arguments still to come.

    OpenAI's item has no `status`: it is complete once shown. Only one a failure cut off
    mid-way says so (`"status": "incomplete"`), and it cannot be approved.
    """
    return {
        "id": ids.new_id("mcpr"),
        "type": APPROVAL_REQUEST,
        "server_label": server_label,
        "name": name,
        "arguments": "",
    }


def is_approval_request(item: Item) -> bool:
    return item.get("type") == APPROVAL_REQUEST


def is_cut_off(request: Item) -> bool:
    """Whether an approval request was cut off before it was complete (see above)."""
    return request.get("status") == "incomplete"


def awaits_approval(items: Iterable[Item]) -> bool:
    """Whether a model turn's items hold a request a client can answer."""
    return any(is_approval_request(item) and not is_cut_off(item) for item in items)


def denial_text(answer: Item) -> str:
    """What the model reads as the result of a call that was denied."""
    text = "The call was not approved, so it did not run."
    reason = answer.get("reason")
    return f"{text} Reason given: {reason}" if reason else text


#: What the model reads as the result of a call whose request nobody answered.
UNANSWERED_TEXT = "The call did not run: it was not approved."


# --- at the door -------------------------------------------------------------------------


async def check_approval_answers(
    items: list[Item],
    tools: list[JsonObject] | None,
    *,
    owner: str,
    previous_response_id: str | None,
    reader: ResponseFinder,
    conversation: Callable[[], Awaitable[list[Item]]] | None = None,
) -> None:
    """Every `mcp_approval_response` in `items` (a request's input) must answer a request of
    the conversation it continues (its `previous_response_id` chain, or the items of the
    Conversation it names, read by `conversation`), not answered before; an approval must
    name a server that the request's `tools` still has. A 400 naming
    `input[i].approval_request_id` otherwise."""
    if not has_answers(items):
        return  # the common case costs no reading of the conversation
    earlier = await chain_items(reader, owner, previous_response_id)
    if conversation is not None:
        earlier = [*await conversation(), *earlier]
    requests = {i["id"]: i for i in [*earlier, *items] if is_approval_request(i)}
    answered = {i["approval_request_id"] for i in earlier if i["type"] == APPROVAL_RESPONSE}
    labels = {tool.get("server_label") for tool in tools or [] if tool.get("type") == "mcp"}
    for index, item in enumerate(items):
        if item["type"] != APPROVAL_RESPONSE:
            continue
        param = f"input[{index}].approval_request_id"
        request_id: str = item["approval_request_id"]
        # An id Ferry could not have made is not echoed back.
        shown = f" '{request_id}'" if ids.is_well_formed(request_id) else ""
        request = requests.get(request_id)
        if request is None:
            raise RequestError(
                f"No approval request with id{shown} in this conversation.", param=param
            )
        if request_id in answered:
            raise RequestError(f"The approval request{shown} was already answered.", param=param)
        answered.add(request_id)
        if not item["approve"]:
            continue
        if is_cut_off(request):
            raise RequestError(
                f"The approval request{shown} was cut off before it was complete; it cannot "
                "be approved.",
                param=param,
            )
        if request["server_label"] not in labels:
            raise RequestError(
                f"The approval request{shown} is for MCP server '{request['server_label']}'; "
                "include that server in `tools` to run the call.",
                param=param,
            )


def has_answers(items: Iterable[Item]) -> bool:
    """Whether `items` answer approval requests."""
    return any(item["type"] == APPROVAL_RESPONSE for item in items)


# --- in the run ----------------------------------------------------------------------------


def approved_calls(
    response_id: str, answers: list[Item], conversation: list[Item], done: set[str]
) -> list[Item]:
    """The `mcp_call` items that the approvals among `answers` (this response's input) let
    run, in the order approved, leaving out those `done` (by call key: a finished step)
    and any an earlier response of the conversation already ran."""
    requests = {item["id"]: item for item in conversation if is_approval_request(item)}
    ran = {item.get("approval_request_id") for item in conversation if item["type"] == "mcp_call"}
    calls: list[Item] = []
    for answer in answers:
        if answer["type"] != APPROVAL_RESPONSE or not answer["approve"]:
            continue
        request = requests.get(answer["approval_request_id"])
        if request is None or request["id"] in ran:
            continue
        ran.add(request["id"])
        call = _approved_call(response_id, request)
        if call["id"] not in done:
            calls.append(call)
    return calls


def _approved_call(response_id: str, request: Item) -> Item:
    # The same id on every attempt of this response: its step is found done after a crash,
    # or redone into the item the log already announced.
    digest = hashlib.sha256(f"{response_id}:{request['id']}".encode()).hexdigest()
    return {
        "id": f"mcp_{digest[:48]}",
        "type": "mcp_call",
        "status": "in_progress",
        "server_label": request["server_label"],
        "name": request["name"],
        "arguments": request["arguments"],
        "output": None,
        "error": None,
        "approval_request_id": request["id"],
    }
