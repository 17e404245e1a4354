"""The input items that need the store, the keys or a file before a request is accepted:
item references become the items they name, sealed reasoning and compaction items are
opened, the files of `input_file` parts are read into text.

All happen once, at the door, and the row keeps the result: a conversation continued
later reads the items as they were resolved, even after the referenced response is deleted,
the key that sealed a blob has been retired, or the file's URL answers no more.
"""

from __future__ import annotations

from typing import Protocol

from app import ids
from app.engine.errors import RequestError
from app.engine.input_files import FileReader
from app.engine.items import OPENED_SUMMARY
from app.engine.sealing import BrokenSeal, KeyRing, Opened, SealKind
from app.shapes import Item


class ItemFinder(Protocol):
    async def find_item(self, owner: str, item_id: str) -> Item | None:
        """The item with this id in the input or output of one of the owner's responses."""
        ...


async def resolve_input(
    items: list[Item],
    owner: str,
    finder: ItemFinder,
    keys: KeyRing,
    files: FileReader,
    param: str = "input",
) -> list[Item]:
    """`items` with every `item_reference` replaced by the item it names, every sealed
    reasoning or compaction item opened and every file read; a 400 naming `input[i]...`
    (`param[i]...`) when one cannot be."""
    resolved = []
    for index, item in enumerate(items):
        where = f"{param}[{index}]"
        if item["type"] == "item_reference":
            item = await _referenced(item["id"], owner, finder, where)
        elif item["type"] == "reasoning" and "encrypted_content" in item:
            item = await _opened(item, owner, keys, where)
        elif item["type"] == "message" and isinstance(item.get("content"), list):
            item = await _with_files_read(item, files, where)
        elif item["type"] == "compaction":
            item = await _opened_compaction(item, owner, keys, where)
        resolved.append(item)
    return resolved


async def _with_files_read(item: Item, files: FileReader, where: str) -> Item:
    content = item["content"]
    if not any(part.get("type") == "input_file" and "text" not in part for part in content):
        return item
    read = [
        await files.read(part, f"{where}.content[{index}]")
        if part.get("type") == "input_file" and "text" not in part
        else part
        for index, part in enumerate(content)
    ]
    return {**item, "content": read}


async def _referenced(item_id: str, owner: str, finder: ItemFinder, where: str) -> Item:
    # An id Ferry could not have stored is not looked up (nor echoed back).
    found = await finder.find_item(owner, item_id) if ids.is_well_formed(item_id) else None
    if found is None:
        shown = f" '{item_id}'" if ids.is_well_formed(item_id) else ""
        raise RequestError(f"Item with id{shown} not found.", param=f"{where}.id")
    return found


async def _opened(item: Item, owner: str, keys: KeyRing, where: str) -> Item:
    """The reasoning item with the text its blob seals as its `content`."""
    opened = await _open(item, owner, keys, where, SealKind.REASONING)
    # The sealed text wins over a `content` sent with it: it is what the model thought.
    content = [{"type": "reasoning_text", "text": opened.text}]
    return {**item, "id": opened.item_id, "content": content}


async def _opened_compaction(item: Item, owner: str, keys: KeyRing, where: str) -> Item:
    """The compaction item with the summary its blob seals kept beside the blob."""
    opened = await _open(item, owner, keys, where, SealKind.COMPACTION)
    return {**item, "id": opened.item_id, OPENED_SUMMARY: opened.text}


async def _open(item: Item, owner: str, keys: KeyRing, where: str, kind: SealKind) -> Opened:
    """What the item's blob seals; a 400 naming its `encrypted_content` when it does not
    open for this owner as this kind of item, or was sealed for another item id."""
    blob: str = item["encrypted_content"]
    sealer = await keys.sealer()
    try:
        opened = sealer.open(owner, blob, kind)
        if item["id"] is not None and item["id"] != opened.item_id:
            raise BrokenSeal("sealed for another item")
    except BrokenSeal:
        raise RequestError(
            f"The encrypted content {_abridged(blob)}could not be verified.",
            param=f"{where}.encrypted_content",
            code="invalid_encrypted_content",
        ) from None
    return opened


def _abridged(blob: str) -> str:
    """The blob as OpenAI quotes one it refuses, its first and last four characters (and a
    space), or nothing when it is too short or odd to quote."""
    quotable = len(blob) > 12 and blob.isascii() and blob.isprintable()
    return f"{blob[:4]}...{blob[-4:]} " if quotable else ""
