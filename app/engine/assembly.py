"""The output of a response, assembled from the results of its finished steps.

GET, stream replay and the loop itself all use this one function, so every view of a
response shows the same items in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def assemble_output(step_results: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    for result in step_results:
        if result:
            output.extend(result.get("items") or [])
    return output
