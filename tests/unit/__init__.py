"""The unit tier: no database, no server, no subprocess; functions and apps in process, and
the engine's loop driven directly, in seconds (`python -m pytest tests/unit`).

The loop runs on a `MemoryStore` (tests/support/memory_store.py), a scripted upstream and
the registered tools' servers behind `httpx.MockTransport` (upstream.py, tool_host.py), and
a recording sink (streams.py); harness.py wires them together.
"""
