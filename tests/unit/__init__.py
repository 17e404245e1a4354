"""The unit tier: the engine's logic driven directly, in seconds, with no database, server
or subprocess (`python -m pytest tests/unit`).

The loop runs on a `MemoryStore` (tests/support/memory_store.py), a scripted upstream and
the registered tools' servers behind `httpx.MockTransport` (upstream.py, tool_host.py), and
a recording sink (streams.py); harness.py wires them together.
"""
