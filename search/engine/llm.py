"""The fleet of LLMs and the client that calls them, with accounting.

A :class:`ModelSpec` is a LiteLLM model string plus what the search needs to know of it:
endpoint, parameter count, price per million input/output tokens, and where its API key
lives (the *name* of an environment variable, never the key). :class:`LiteLLMClient` makes
the calls (LiteLLM is imported lazily: it takes ~5 s) and turns every outcome, including
timeouts and dead servers, into a :class:`Reply` with the server's real token counts.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

OK, PARSE_ERROR, INVALID_MODEL, TIMEOUT, SERVER_ERROR, ESCALATION = (
    "ok",
    "parse_error",
    "invalid_model",
    "timeout",
    "server_error",
    "escalation",
)
OUTCOMES = (OK, PARSE_ERROR, INVALID_MODEL, TIMEOUT, SERVER_ERROR, ESCALATION)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


class FleetError(ValueError):
    """A fleet definition that cannot be used."""


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the fleet name the prompt and the tree use, e.g. "qwen2.5-coder-0.5b"
    model: str  # the LiteLLM model string, e.g. "openai/qwen2.5-coder-0.5b"
    params: float  # parameter count
    usd_per_m_input: float = 0.0
    usd_per_m_output: float = 0.0
    api_base: str | None = None
    api_key_env: str | None = None  # the NAME of the environment variable holding the key
    timeout_s: float = 60.0
    max_tokens: int = 96
    json_schema: bool = True  # the server enforces response_format json_schema

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.usd_per_m_input + completion_tokens * self.usd_per_m_output) / 1e6

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> ModelSpec:
        if "api_key" in data:
            raise FleetError("put API keys in the environment and name the variable in api_key_env")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise FleetError(f"unknown model field(s): {', '.join(sorted(unknown))}")
        try:
            spec = cls(**data)
        except TypeError as exc:
            raise FleetError(f"model definition: {exc}") from None
        return validate_model(spec)


def validate_model(spec: ModelSpec) -> ModelSpec:
    if not _NAME_RE.match(spec.name or ""):
        raise FleetError(f"model name {spec.name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    if not spec.model or "/" not in spec.model:
        raise FleetError(f"{spec.name}: model must be a LiteLLM string such as openai/<name>")
    if not (spec.params and spec.params > 0):
        raise FleetError(f"{spec.name}: params must be a positive parameter count")
    if spec.usd_per_m_input < 0 or spec.usd_per_m_output < 0:
        raise FleetError(f"{spec.name}: prices must not be negative")
    if not (0 < spec.timeout_s <= 600):
        raise FleetError(f"{spec.name}: timeout_s must be in (0, 600]")
    if spec.api_key_env is not None and not re.match(r"^[A-Z_][A-Z0-9_]*$", spec.api_key_env):
        raise FleetError(f"{spec.name}: api_key_env must be an environment variable name")
    return spec


@dataclass(frozen=True)
class Fleet:
    models: tuple[ModelSpec, ...]

    def __post_init__(self) -> None:
        if not self.models:
            raise FleetError("a fleet needs at least one model")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise FleetError("model names in a fleet must be unique")

    @classmethod
    def of(cls, models: Sequence[ModelSpec | Mapping]) -> Fleet:
        return cls(tuple(m if isinstance(m, ModelSpec) else ModelSpec.from_dict(m) for m in models))

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def largest(self) -> ModelSpec:
        return max(self.models, key=lambda m: m.params)

    @property
    def smallest(self) -> ModelSpec:
        return min(self.models, key=lambda m: m.params)

    def get(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def params(self) -> dict[str, float]:
        return {m.name: m.params for m in self.models}

    def only(self, name: str) -> Fleet:
        return Fleet((self.get(name),))

    def to_list(self) -> list[dict]:
        return [m.to_dict() for m in self.models]


@dataclass
class Reply:
    """What one call returned, whatever happened."""

    text: str
    outcome: str  # ok | timeout | server_error (parsing happens in the policy)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    latency_s: float = 0.0
    error: str = ""


class LLMClient(Protocol):
    def complete(self, model: ModelSpec, messages: list[dict], *, schema: dict | None = None) -> Reply: ...


@dataclass
class LiteLLMClient:
    """Calls any LiteLLM provider; local llama.cpp servers are ``openai/<alias>`` with an api_base."""

    temperature: float = 0.7
    num_retries: int = 0
    _registered: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # calls may run on several threads

    def _litellm(self):
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import logging

        import litellm

        logging.getLogger("LiteLLM").setLevel(logging.ERROR)
        litellm.suppress_debug_info = True
        litellm.telemetry = False
        return litellm

    def prepare(self, model: ModelSpec) -> None:
        """Import LiteLLM and register ``model``'s prices, on the caller's thread: calls made on
        other threads then only read LiteLLM's registry."""
        self._register(self._litellm(), model)

    def _register(self, litellm, model: ModelSpec) -> None:
        with self._lock:
            self._register_once(litellm, model)

    def _register_once(self, litellm, model: ModelSpec) -> None:
        if model.model in self._registered:
            return
        provider, _, _ = model.model.partition("/")
        litellm.register_model(
            {
                model.model: {
                    "input_cost_per_token": model.usd_per_m_input / 1e6,
                    "output_cost_per_token": model.usd_per_m_output / 1e6,
                    "litellm_provider": provider,
                    "mode": "chat",
                }
            }
        )
        self._registered.add(model.model)

    def complete(self, model: ModelSpec, messages: list[dict], *, schema: dict | None = None) -> Reply:
        litellm = self._litellm()
        self._register(litellm, model)
        kwargs = dict(
            model=model.model,
            messages=messages,
            max_tokens=model.max_tokens,
            temperature=self.temperature,
            timeout=model.timeout_s,
            num_retries=self.num_retries,
        )
        if model.api_base:
            kwargs["api_base"] = model.api_base
        key = os.environ.get(model.api_key_env) if model.api_key_env else None
        kwargs["api_key"] = key or "sk-local-no-key"
        if schema is not None and model.json_schema:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "joint_action", "schema": schema, "strict": True},
            }
        start = time.perf_counter()
        try:
            response = litellm.completion(**kwargs)
        except Exception as exc:  # noqa: BLE001 - every provider failure becomes an outcome
            latency = time.perf_counter() - start
            outcome = TIMEOUT if _is_timeout(litellm, exc) else SERVER_ERROR
            return Reply("", outcome, latency_s=latency, error=_redact(f"{type(exc).__name__}: {exc}", key))
        latency = time.perf_counter() - start
        usage = getattr(response, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        text = response.choices[0].message.content or ""
        return Reply(text, OK, pt, ct, model.cost(pt, ct), latency)


def _is_timeout(litellm, exc: Exception) -> bool:
    timeout_types = tuple(t for t in (getattr(litellm, "Timeout", None),) if isinstance(t, type))
    return isinstance(exc, timeout_types) or "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower()


def _redact(text: str, secret: str | None) -> str:
    text = text.strip().splitlines()[0] if text.strip() else text
    if secret:
        text = text.replace(secret, "***")
    return text[:300]
