"""Settings read from the environment; every value has a documented default (see README)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app import setting_checks as checks
from app.tools_file import read_tools_file

#: Where the bundled demo upstream listens when `UPSTREAM_BASE_URL` is unset in `dev`.
DEMO_UPSTREAM_PORT = 8099

#: Settings whose values may hold secrets (a database URL may carry a password): never
#: echoed in an error message.
SECRET_SETTINGS = frozenset(
    {"database_url", "upstream_api_key", "api_keys", "admin_api_keys", "console_secret"}
)
#: Settings read from the environment only, never from a command-line option, which any
#: user of the machine sees in `ps`.
ENVIRONMENT_ONLY_SETTINGS = frozenset(
    {"upstream_api_key", "api_keys", "admin_api_keys", "console_secret"}
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    database_url: str = Field(
        default="",
        description="Postgres URL. Empty: `dev` starts an embedded Postgres under ./.ferry/.",
    )
    db_pool_min_size: int = Field(
        default=1, ge=0, description="Connections each process keeps open."
    )
    db_pool_max_size: int = Field(
        default=10, ge=1, description="Most connections each process opens."
    )
    db_pool_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest wait for a database connection; then 503."
    )
    db_run_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest a running response, or an admitted inline create, waits for a "
        "database connection (a burst queues; it does not fail).",
    )

    upstream_base_url: str = Field(
        default="",
        description="Base URL of the chat-completions upstream, e.g. http://vllm:8000/v1. "
        "Empty: `dev` starts the bundled demo upstream.",
    )
    upstream_api_key: str = Field(default="", description="Bearer key sent to the upstream.")
    upstream_timeout_s: float = Field(
        default=300.0, gt=0, description="Read timeout for the upstream stream, in seconds."
    )
    upstream_connect_timeout_s: float = Field(
        default=10.0, gt=0, description="Connect (and write) timeout to the upstream, in seconds."
    )
    upstream_max_connections: int = Field(
        default=512,
        ge=1,
        description="Open connections to the upstream per process; more requests wait for one. "
        "Keep it above MAX_INLINE_PER_PROCESS (API) and WORKER_CONCURRENCY (worker).",
    )
    upstream_keepalive_connections: int = Field(
        default=8,
        ge=0,
        description="Connections to the upstream kept open for the next request, while no "
        "more than this many streams are open: beyond, a finished one is closed. Kept small: "
        "httpx's pool does work for every idle connection on every request.",
    )
    think_tags_as_reasoning: bool = Field(
        default=False,
        description="Content that opens with <think>…</think> is reasoning, for models served "
        "without a reasoning parser: the tags' text becomes a reasoning item.",
    )

    api_keys: str = Field(
        default="",
        description="Comma-separated API keys clients must send. Empty: the API is open.",
    )
    admin_api_keys: str = Field(
        default="",
        description="Comma-separated keys that open the operator console (/console), beside "
        "keys made with `ferry keys create --admin`. Empty: only those.",
    )
    console_secret: str = Field(
        default="",
        description="Secret signing console session cookies. Empty: one generated once and "
        "kept in the database, shared by every replica.",
    )
    console_session_ttl_s: float = Field(
        default=28800.0,
        gt=0,
        description="How long a console login lasts; then the key is asked for again.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks (CIDR) whose X-Request-Id header "
        "is honoured, or * for any; empty: request ids are always generated.",
    )
    host: str = Field(default="127.0.0.1", description="Address the API binds.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port the API binds.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above)."
    )
    log_level: str = Field(
        default="INFO", description="Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )

    sse_keepalive_s: float = Field(
        default=15.0, gt=0, description="Interval of SSE comment keep-alives while idle."
    )
    shutdown_timeout_s: float = Field(
        default=10.0, gt=0, description="Bound on graceful shutdown of the API on SIGTERM."
    )
    websocket_connection_limit_s: float = Field(
        default=3600.0,
        gt=0,
        description="How long a WebSocket connection on /v1/responses may last (OpenAI's 60 "
        "minutes); then an error `websocket_connection_limit_reached` and the socket closes.",
    )
    inline_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="Lease on inline work; a lapsed lease marks the running process as dead.",
    )
    event_flush_interval_s: float = Field(
        default=0.05,
        gt=0,
        description="Longest a background event waits before its batch is written to the log "
        "(while an earlier batch was written within it; after a quiet spell, at once).",
    )
    event_flush_max_events: int = Field(
        default=256,
        ge=1,
        description="A background stream's batch is written as soon as it holds this many "
        "events: a fast stream reaches its tailers in batches this size.",
    )
    tail_recheck_s: float = Field(
        default=2.0,
        gt=0,
        description="A stream tailer re-reads the log at least this often, notification or not.",
    )
    flex_poll_interval_s: float = Field(
        default=0.5, gt=0, description="How often a held flex request checks its response."
    )
    flex_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="How long a flex request is held before a 504 (the work goes on).",
    )
    flex_max_queue_depth: int = Field(
        default=1000, ge=0, description="Flex jobs waiting beyond this many: new ones get 429."
    )
    tools_file: str = Field(
        default="", description="TOML file of server-side HTTP tools; empty: none."
    )
    max_model_turns: int = Field(
        default=10, ge=1, description="Model turns one response may take before `incomplete`."
    )
    response_timeout_s: float = Field(
        default=900.0,
        gt=0,
        description="Wall-clock limit on one response's work; past it, `failed` (timeout).",
    )
    mcp_allowed_urls: str = Field(
        default="",
        description="Comma-separated URL prefixes MCP servers may have; empty: MCP disabled.",
    )
    mcp_timeout_s: float = Field(
        default=60.0, gt=0, description="Bound on one MCP request (listing tools or a call)."
    )
    input_file_max_bytes: int = Field(
        default=10 * 1024 * 1024,
        gt=0,
        description="Largest file an input_file part may hold (its decoded file_data, or what "
        "its file_url answers); 400 above.",
    )
    input_file_urls: str = Field(
        default="",
        description="Comma-separated URL prefixes an input_file's file_url may have (Ferry "
        "fetches it); empty: file_url is refused, file_data only.",
    )
    input_file_timeout_s: float = Field(
        default=30.0, gt=0, description="Bound on fetching one input_file's file_url."
    )
    webhook_allowed_urls: str = Field(
        default="",
        description="Comma-separated URL prefixes webhook endpoints may have; empty: any https "
        "URL. Private addresses only under a prefix that names the host.",
    )
    webhook_all_responses: bool = Field(
        default=False,
        description="Deliver the ending of every response by webhook, not only of background "
        "responses.",
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Bound on one delivery attempt: connecting, sending, the receiver's answer.",
    )
    webhook_retry_window_s: float = Field(
        default=259200.0,
        gt=0,
        description="How long a delivery that fails is tried again (72 hours); then given up.",
    )
    webhook_backoff_base_s: float = Field(
        default=5.0, gt=0, description="Delay before a delivery's second attempt; then doubling."
    )
    webhook_backoff_max_s: float = Field(
        default=3600.0, gt=0, description="Longest delay between two attempts at a delivery."
    )
    upstream_max_attempts: int = Field(
        default=3,
        ge=1,
        description="Tries of a model turn before its first token (connection errors, "
        "408, 429, 5xx), with exponential backoff and jitter.",
    )
    upstream_backoff_base_s: float = Field(
        default=0.5, gt=0, description="First retry delay; doubles with each retry."
    )
    upstream_backoff_max_s: float = Field(
        default=20.0, gt=0, description="Longest wait between tries, Retry-After included."
    )
    model_context_tokens: str = Field(
        default="",
        description="Context sizes in tokens, as model=tokens,...; `truncation: auto` fits a "
        "request into them. Unlisted models: the upstream's /models max_model_len, if any.",
    )
    upstream_send_reasoning: bool = Field(
        default=True,
        description="Send the reasoning of earlier turns upstream as `reasoning_content` on "
        "assistant messages; off for upstreams that reject the field.",
    )
    reasoning_encryption_keys: str = Field(
        default="",
        description="Comma-separated Fernet keys sealing reasoning (`encrypted_content`): the "
        "first seals, every one opens. Empty: one key generated once and kept in the database.",
    )
    idempotency_ttl_s: float = Field(
        default=86400.0, gt=0, description="How long an Idempotency-Key on create is honoured."
    )
    max_queued_background: int = Field(
        default=10000, ge=0, description="Queued background responses, all keys; then 429."
    )
    max_queued_per_key: int = Field(
        default=1000, ge=0, description="Queued background responses per API key; then 429."
    )
    max_inline_per_process: int = Field(
        default=256, ge=0, description="Inline responses one API process runs at once; then 429."
    )
    retention_days: float = Field(
        default=30.0, gt=0, description="Terminal responses older than this are deleted."
    )
    event_retention_hours: float = Field(
        default=168.0,
        gt=0,
        description="Event logs of terminal responses older than this are deleted.",
    )
    worker_heartbeat_s: float = Field(
        default=5.0, gt=0, description="How often a worker records that it is alive."
    )
    stall_threshold_s: float = Field(
        default=30.0,
        gt=0,
        description="A worker silent this long is dead: its jobs are retried elsewhere.",
    )
    recovery_interval_s: int = Field(
        default=5,
        ge=1,
        le=59,
        description="Seconds between recovery sweeps (stalled jobs, lapsed inline leases).",
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Tries of one response's job; then the response fails."
    )
    max_run_time_s: float = Field(
        default=1800.0,
        gt=0,
        description="A job running longer than this is stopped and its response failed.",
    )
    worker_concurrency: int = Field(default=4, ge=1, description="Jobs a worker runs at once.")
    worker_poll_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often an idle worker looks for jobs whose time has come (the next "
        "attempt at a webhook); a new job wakes it at once.",
    )
    worker_shutdown_timeout_s: float = Field(
        default=30.0, gt=0, description="Grace period for running jobs when a worker is stopped."
    )

    # Checked when the settings are loaded, so that a bad value stops the process as it
    # starts, naming the variable, instead of failing the first request that needs it.

    @field_validator("database_url")
    @classmethod
    def _database_url_parses(cls, value: str) -> str:
        return checks.database_url(value) if value else value

    metrics_models: str = Field(
        default="",
        description="Comma-separated model names that metrics label as themselves; every "
        "other model is labelled `other`, so labels stay bounded.",
    )
    worker_metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port on which a worker serves its Prometheus metrics; 0: none.",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="Address a worker's metrics port binds."
    )
    db_probe_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest /readyz and a /metrics scrape wait for the database.",
    )

    @field_validator("upstream_base_url")
    @classmethod
    def _upstream_url_parses(cls, value: str) -> str:
        return checks.http_url(value).rstrip("/") if value else value

    @field_validator("mcp_allowed_urls")
    @classmethod
    def _mcp_prefixes_parse(cls, value: str) -> str:
        for prefix in _comma_list(value):
            checks.http_url(prefix)
        return value

    @field_validator("input_file_urls")
    @classmethod
    def _input_file_prefixes_parse(cls, value: str) -> str:
        for prefix in _comma_list(value):
            checks.http_url(prefix)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        checks.networks(_comma_list(value))
        return value

    @field_validator("model_context_tokens")
    @classmethod
    def _context_sizes_parse(cls, value: str) -> str:
        checks.context_sizes(_comma_list(value))
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level_known(cls, value: str) -> str:
        return checks.log_level(value)

    @field_validator("tools_file")
    @classmethod
    def _tools_file_usable(cls, value: str) -> str:
        if value:
            read_tools_file(value)  # raises, saying which tool and field is wrong
        return value

    @model_validator(mode="after")
    def _pool_sizes_agree(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise PydanticCustomError(
                "pool_sizes",
                "DB_POOL_MIN_SIZE ({low}) is more than DB_POOL_MAX_SIZE ({high})",
                {"low": self.db_pool_min_size, "high": self.db_pool_max_size},
            )
        return self

    @property
    def reasoning_key_list(self) -> list[str]:
        return [k.strip() for k in self.reasoning_encryption_keys.split(",") if k.strip()]

    @property
    def model_context_sizes(self) -> dict[str, int]:
        return checks.context_sizes(_comma_list(self.model_context_tokens))

    @property
    def mcp_allowed_prefixes(self) -> list[str]:
        return _comma_list(self.mcp_allowed_urls)

    @property
    def input_file_url_prefixes(self) -> list[str]:
        return _comma_list(self.input_file_urls)

    @property
    def metrics_model_set(self) -> frozenset[str]:
        return frozenset(m.strip() for m in self.metrics_models.split(",") if m.strip())

    @property
    def webhook_allowed_prefixes(self) -> list[str]:
        return [p.strip() for p in self.webhook_allowed_urls.split(",") if p.strip()]

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(_comma_list(self.api_keys))

    @property
    def admin_api_key_set(self) -> frozenset[str]:
        return frozenset(_comma_list(self.admin_api_keys))

    @property
    def trusted_proxy_networks(self) -> checks.Networks:
        return checks.networks(_comma_list(self.trusted_proxies))


def _comma_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
