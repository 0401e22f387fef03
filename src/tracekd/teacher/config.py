"""``TeacherConfig``: how to reach a teacher endpoint, how to sample, and the run's limits."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..errors import ConfigError


@dataclass
class TeacherConfig:
    """An OpenAI-compatible chat-completions endpoint asked once per request; cached, resumable, budgeted."""

    base_url: str = field(metadata={
        "help": "the endpoint's OpenAI-compatible base URL, e.g. https://api.deepseek.com or "
                "http://127.0.0.1:8000/v1"})
    model: str = field(metadata={
        "help": "model id sent with every request (and part of the cache key), e.g. deepseek-reasoner"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "name of the environment variable holding the API key (the key itself is never written "
                "anywhere; unset means no key, as local servers need)"})
    temperature: float | None = field(default=None, metadata={
        "help": "sampling temperature sent with each request (none: the server's default)"})
    top_p: float | None = field(default=None, metadata={
        "help": "nucleus sampling mass sent with each request (none: the server's default)"})
    max_tokens: int | None = field(default=None, metadata={
        "help": "completion token limit of each request, reasoning included where the server counts it "
                "(none: the server's default)"})
    seed: int | None = field(default=None, metadata={
        "help": "sampling seed sent with each request, where the server honours it (none: not sent)"})
    extra_body: dict | None = field(default=None, metadata={
        "help": "extra JSON fields of each request, e.g. {chat_template_kwargs: {enable_thinking: true}} "
                "(part of the cache key)"})
    concurrency: int = field(default=4, metadata={"help": "requests in flight at once"})
    max_requests: int | None = field(default=None, metadata={
        "help": "stop cleanly after sending this many requests in this run (cached answers are free)"})
    max_tokens_total: int | None = field(default=None, metadata={
        "help": "stop cleanly once this run's requests used this many tokens (prompt + completion); "
                "requests already in flight finish"})
    price_per_1m_input: float | None = field(default=None, metadata={
        "help": "price per 1M prompt tokens, to report the cost (any currency)"})
    price_per_1m_output: float | None = field(default=None, metadata={
        "help": "price per 1M completion tokens (reasoning included), to report the cost"})
    timeout: float = field(default=600.0, metadata={"help": "seconds to wait for one response"})
    max_retries: int = field(default=5, metadata={
        "help": "retries of a request on 429, 5xx, timeouts, dropped connections and malformed responses, "
                "with exponential backoff"})
    cache_dir: str | None = field(default=None, metadata={
        "help": "response cache folder shared by runs (default: $TRACEKD_CACHE/teacher, else "
                "~/.cache/tracekd/teacher)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise ConfigError("model must not be empty")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0, got {self.timeout}")
        for name in ("max_tokens", "max_requests", "max_tokens_total"):
            value = getattr(self, name)
            if value is not None and value < (0 if name != "max_tokens" else 1):
                raise ConfigError(f"{name} must be >= {0 if name != 'max_tokens' else 1} (or unset), got {value}")
        if self.temperature is not None and self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("price_per_1m_input", "price_per_1m_output"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")

    def sampling(self) -> dict:
        """The sampling settings sent with each request (None = not sent: the server's default).

        >>> TeacherConfig("http://127.0.0.1:1/v1", "m", temperature=0.0, max_tokens=8).sampling()
        {'temperature': 0.0, 'top_p': None, 'max_tokens': 8, 'seed': None}
        """
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed}

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """The price of these tokens, or None when no price is configured.

        >>> TeacherConfig("http://x/v1", "m", price_per_1m_input=0.55, price_per_1m_output=2.19).cost(
        ...     1_000_000, 500_000)
        1.645
        """
        if self.price_per_1m_input is None and self.price_per_1m_output is None:
            return None
        return round(prompt_tokens / 1e6 * (self.price_per_1m_input or 0.0)
                     + completion_tokens / 1e6 * (self.price_per_1m_output or 0.0), 9)


@dataclass(kw_only=True)
class TeacherRunConfig(TeacherConfig):
    """`tracekd teacher`: the endpoint settings plus which file to ask about and where to write."""

    input_file: str = field(metadata={
        "help": "examples JSONL (e.g. BUILD/examples/test.jsonl: asked in the method's prompt) or SFT rows "
                "JSONL (asked with their prompt messages)", "aliases": ["--input"]})
    out: str = field(metadata={"help": "output folder (responses.jsonl + manifest.json; a rerun resumes)"})
    purpose: str = field(default="answer", metadata={
        "help": "what the requests are for, recorded on every response (answer, zero-shot, ...)"})
    system: bool = field(default=False, metadata={
        "help": "send the prompt's system message too (the reference asked the teacher in one user turn)"})
    template: str | None = field(default=None, metadata={
        "help": "prompt template for examples (default: the dataset's own; a name or a YAML file)"})
    max_examples: int | None = field(default=None, metadata={"help": "ask about the first N lines only"})

    def client_settings(self) -> TeacherConfig:
        """The endpoint part of this config, as the Python API takes it."""
        return TeacherConfig(**{f.name: getattr(self, f.name) for f in fields(TeacherConfig)})
