"""Settings are checked when they are loaded: a bad value is one line naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.setting_options import describe_errors
from app.tools_file import ToolsFileError, read_tools_file


def refusal(given: dict[str, str] | None = None, **environment: str) -> list[str]:
    """The lines a process would print for these settings (from the environment, or given
    as options)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        with pytest.raises(ValidationError) as info:
            Settings(**(given or {}))
    return describe_errors(info.value, given or {})


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("UPSTREAM_TIMEOUT_S", "-1", "greater than 0 (got '-1')"),
        ("UPSTREAM_CONNECT_TIMEOUT_S", "soon", "valid number"),
        ("PORT", "70000", "less than or equal to 65535"),
        ("UPSTREAM_BASE_URL", "localhost:8000/v1", "not an http:// or https:// URL"),
        ("UPSTREAM_BASE_URL", "http://host:port/v1", "port is not a number"),
        ("MCP_ALLOWED_URLS", "http://ok/,ftp://no/", "not an http:// or https:// URL"),
        ("INPUT_FILE_URLS", "https://files/,s3://bucket/", "not an http:// or https:// URL"),
        ("WEBSOCKET_CONNECTION_LIMIT_S", "0", "greater than 0"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local", "'proxy.local' is not an IP address"),
        ("LOG_LEVEL", "LOUD", "not a log level"),
        ("RECOVERY_INTERVAL_S", "60", "less than or equal to 59"),
        ("MODEL_CONTEXT_TOKENS", "qwen=32768,llama", "'llama' is not model=tokens"),
        ("MODEL_CONTEXT_TOKENS", "qwen=0", "'qwen=0' is not model=tokens"),
        ("MODEL_CONTEXT_TOKENS", "=4096", "'=4096' is not model=tokens"),
        ("MODEL_CONTEXT_TOKENS", "qwen=4k", "'qwen=4k' is not model=tokens"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_variable(variable: str, value: str, says: str) -> None:
    (line,) = refusal(**{variable: value})
    assert line.startswith(f"bad setting {variable}: ")
    assert says in line
    assert "\n" not in line


def test_context_sizes_are_read_per_model() -> None:
    settings = Settings(model_context_tokens=" qwen = 32768 , org/model=v2=8192,qwen=4096")
    assert settings.model_context_sizes == {"qwen": 4096, "org/model=v2": 8192}
    assert Settings(model_context_tokens="").model_context_sizes == {}


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ferry:pw@db/ferry?bogus=1",
        "postgresql://ferry:pw@db:fivefourthreetwo/ferry",
        "ferry:pw@db/ferry",
    ],
)
def test_an_unparseable_database_url_is_refused_without_repeating_it(url: str) -> None:
    (line,) = refusal(DATABASE_URL=url)
    assert line.startswith("bad setting DATABASE_URL: not a Postgres connection URL")
    assert "pw" not in line  # a URL may carry a password: never echoed


def test_database_urls_libpq_accepts_are_accepted() -> None:
    for url in (
        "postgresql://ferry@127.0.0.1:5432/ferry",
        "postgres://a,b:5433/ferry?sslmode=require",
        "host=/var/run/postgresql dbname=ferry",
    ):
        assert Settings(database_url=url).database_url == url


def test_an_option_is_named_beside_its_variable() -> None:
    (line,) = refusal({"port": "eighty"})
    assert line.startswith("bad setting PORT (from --port): ")
    assert "(got 'eighty')" in line


def test_every_bad_variable_gets_its_line() -> None:
    lines = refusal(UPSTREAM_TIMEOUT_S="0", MAX_MODEL_TURNS="0")
    assert [line.split(":")[0] for line in lines] == [
        "bad setting UPSTREAM_TIMEOUT_S",
        "bad setting MAX_MODEL_TURNS",
    ]


def test_pool_sizes_that_contradict_each_other_are_refused() -> None:
    (line,) = refusal(DB_POOL_MIN_SIZE="20", DB_POOL_MAX_SIZE="5")
    assert line == "bad settings: DB_POOL_MIN_SIZE (20) is more than DB_POOL_MAX_SIZE (5)"


def test_upstream_url_loses_its_trailing_slash() -> None:
    assert Settings(upstream_base_url="http://vllm:8000/v1/").upstream_base_url == (
        "http://vllm:8000/v1"
    )


def test_trusted_proxies_are_networks_or_anyone() -> None:
    assert Settings().trusted_proxy_networks == ()
    assert Settings(trusted_proxies="*").trusted_proxy_networks is None
    networks = Settings(trusted_proxies="127.0.0.1, 10.0.0.0/8").trusted_proxy_networks
    assert networks is not None
    assert [str(network) for network in networks] == ["127.0.0.1/32", "10.0.0.0/8"]


# --------------------------------------------------------------------------- TOOLS_FILE


def tools_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tools.toml"
    path.write_text(text)
    return str(path)


def test_an_unreadable_tools_file_stops_the_settings(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    (line,) = refusal(TOOLS_FILE=missing)
    assert line.startswith(f"bad setting TOOLS_FILE: cannot read tools file {missing}")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            '[[tools]]\nname = "x"\nurl = "http://a"\nparameters = { type = 7 }',
            "parameters['type']: not a valid JSON Schema",
        ),
        (
            '[[tools]]\nname = "x"\nurl = "http://a"\nparameters = { type = "string" }',
            "parameters.type: must be 'object'",
        ),
        ('[[tools]]\nname = "x"\nurl = "http://a"\ntimeout_s = -3', "tools[0].timeout_s"),
        ('tools = "none"', "must be an array of tables"),
    ],
)
def test_a_tool_with_a_bad_schema_stops_the_settings(tmp_path: Path, text: str, says: str) -> None:
    path = tools_file(tmp_path, text)
    (line,) = refusal(TOOLS_FILE=path)
    assert line.startswith(f"bad setting TOOLS_FILE: {path}: tools")
    assert says in line
    with pytest.raises(ToolsFileError):
        read_tools_file(path)


def test_a_good_tools_file_is_accepted(tmp_path: Path) -> None:
    path = tools_file(
        tmp_path,
        '[[tools]]\nname = "weather"\nurl = "http://a"\n'
        'parameters = { type = "object", properties = { city = { type = "string" } } }',
    )
    assert Settings(tools_file=path).tools_file == path
