"""The type of JSON objects whose shape is not Ferry's to fix.

Raw request bodies, tool parameter schemas, upstream payloads: decoded JSON, read key by
key. Shapes Ferry itself defines have names of their own (`Item`, `Event`, `Usage`,
`ErrorInfo`, ...); this alias is for everything else.
"""

from __future__ import annotations

from typing import Any

#: A decoded JSON object of no fixed shape.
JsonObject = dict[str, Any]
