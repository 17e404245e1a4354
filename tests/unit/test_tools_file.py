"""TOOLS_FILE: what a valid file gives, and the clear errors for a wrong one."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.tools.registry import ToolsFileError, load_tools
from tests.support import PROJECT_ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tools.toml"
    path.write_text(text)
    return path


def test_no_file_means_no_tools() -> None:
    assert load_tools("").tools == {}


def test_tools_are_loaded_with_env_references_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEATHER_TOKEN", "s3cret")
    registry = load_tools(
        write(
            tmp_path,
            """
[[tools]]
name = "get_weather"
description = "Weather"
url = "http://tools.local/weather"
timeout_s = 2.5
retry_safe = false
parameters = { type = "object", properties = { city = { type = "string" } } }
headers = { Authorization = "Bearer ${WEATHER_TOKEN}" }
""",
        )
    )
    tool = registry.get("get_weather")
    assert tool is not None
    assert tool.headers == {"Authorization": "Bearer s3cret"}
    assert tool.timeout_s == 2.5
    assert tool.retry_safe is False
    assert "s3cret" not in repr(tool)  # headers may hold secrets: kept out of logs
    assert registry.offered_to({}) == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert registry.offered_to({"tool_choice": "none"}) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[tools]]\nname = "x"\nurl = "http://a"\nheaders = { A = "${NOPE_NOT_SET}" }',
            "NOPE_NOT_SET is not set",
        ),
        ('[[tools]]\nname = "x"\nurl = "ftp://a"', "tools[0].url"),
        ('[[tools]]\nname = "x"', "tools[0].url"),
        (
            '[[tools]]\nname = "x"\nurl = "http://a"\n[[tools]]\nname = "x"\nurl = "http://b"',
            "registered twice",
        ),
        ('[[tools]]\nname = "x"\nurl = "http://a"\nsurprise = 1', "tools[0].surprise"),
        ("[[tools]\n", "cannot read tools file"),
    ],
)
def test_bad_files_are_refused_with_a_clear_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ToolsFileError) as info:
        load_tools(write(tmp_path, text))
    assert message in str(info.value)


def test_the_example_file_in_the_readme_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEATHER_TOKEN", "t")
    example = PROJECT_ROOT / "examples" / "tools.toml"
    registry = load_tools(example)
    assert set(registry.tools) == {"get_weather", "send_invoice"}
    assert registry.tools["send_invoice"].retry_safe is False
