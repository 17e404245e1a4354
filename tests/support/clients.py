"""The openai SDK as the tests use it on a Ferry API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import openai


@contextlib.contextmanager
def sdk_client(base_url: str, api_key: str = "unused", **options: Any) -> Iterator[openai.OpenAI]:
    """An SDK client on the API at `base_url`, closed afterwards.

    Closed rather than left to the garbage collector: a client collected as part of a
    reference cycle may have its sockets finalised before it closes them, which Python
    reports as an unclosed-socket ResourceWarning (an error in this suite). No retries: any
    retry a test observes is Ferry's own.
    """
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, **options)
    with client:
        yield client
