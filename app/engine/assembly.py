"""The output of a response, assembled from the results of its finished steps.

GET, stream replay and the loop itself all use this one function, so every view of a
response shows the same items in the same order. An item a later step finishes (an
`mcp_call` opened by a model turn, completed by its tool step) replaces the earlier copy
in place, keeping the position it was announced at.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def assemble_output(step_results: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    position: dict[str, int] = {}
    for result in step_results:
        for item in (result or {}).get("items") or []:
            at = position.get(item.get("id", ""))
            if at is None:
                position[item.get("id", "")] = len(output)
                output.append(item)
            else:
                output[at] = item
    return output
