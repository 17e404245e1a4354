"""The README documents every setting, with the default the code has."""

from __future__ import annotations

from app.config import Settings
from tests.support import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def test_every_setting_has_a_line_in_the_configuration_table() -> None:
    missing = [n.upper() for n in Settings.model_fields if f"| `{n.upper()}` |" not in README]
    assert missing == []
