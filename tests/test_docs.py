"""The README documents every setting, with the default the code has."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_has_a_line_in_the_configuration_table() -> None:
    missing = [n.upper() for n in Settings.model_fields if f"| `{n.upper()}` |" not in README]
    assert missing == []
