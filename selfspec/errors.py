"""The selfspec exception tree.

    SelfSpecError
    ├── ConfigError            bad run config / settings (names the field path)
    ├── InputFileError         bad seeds / corpus / dataset line (names file:line)
    ├── ModelProvisionError    the tiny model could not be fetched or converted
    ├── BackendError           a service call failed
    │   ├── BackendUnavailable no HTTP answer: connection refused / reset
    │   ├── BackendTimeout     no HTTP answer within the call's timeout
    │   └── BackendResponseError(status, body)  an error answer (4xx), not retried
    │       └── BackendOverloaded               429 and every 5xx: may succeed later (retried)
    ├── AdapterError
    │   ├── AdapterNotFound    vLLM 404: unknown adapter / no adapter at path
    │   ├── AdapterConflict    vLLM 400: name already loaded
    │   └── AdapterInvalid     bad name or path outside the adapters dir
    ├── ContextLengthExceeded  a prompt leaves no room in the generator's context (vLLM's 400)
    ├── ParseError             model output unusable
    ├── RunNotFound
    ├── RunStateConflict       the run's state does not allow the action (resume of a completed run)
    ├── TooManyRuns            a server already drives as many runs as it may
    ├── EvaluationNotFound
    └── StageError(stage, item_id)  raised `from` the underlying error
    ConfigError
    ├── RequestFieldError(errors)   a request body's bad fields, one entry each
    └── IdempotencyKeyReused   an `Idempotency-Key` sent again with another request body

`RETRYABLE` is what every service client retries (`selfspec.clients.base`, where the status mapping
says why) and what a caller outliving those retries may wait out.
"""

from __future__ import annotations

from typing import Any

from selfspec.urls import redact_url


class SelfSpecError(Exception):
    """Base of every error selfspec raises on purpose."""


class ConfigError(SelfSpecError):
    pass


class InputFileError(SelfSpecError):
    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")


class ModelProvisionError(SelfSpecError):
    pass


class BackendError(SelfSpecError):
    """`backend` names the service (usually its URL); a password in it never reaches the message."""

    def __init__(self, message: str, *, backend: str = "") -> None:
        backend = redact_url(backend)
        self.backend = backend
        super().__init__(f"{backend}: {message}" if backend else message)


class BackendUnavailable(BackendError):
    pass


class BackendTimeout(BackendError):
    pass


class BackendResponseError(BackendError):
    def __init__(self, status: int, body: str, *, backend: str = "") -> None:
        self.status, self.body = status, body
        super().__init__(f"HTTP {status}: {body[:500]}", backend=backend)


class BackendOverloaded(BackendResponseError):
    pass


class AdapterError(SelfSpecError):
    pass


class AdapterNotFound(AdapterError):
    pass


class AdapterConflict(AdapterError):
    pass


class AdapterInvalid(AdapterError):
    pass


class ContextLengthExceeded(SelfSpecError):
    """A prompt does not fit the model's context with room for one output token; the message is vLLM's."""

    def __init__(self, max_model_len: int, prompt_tokens: int) -> None:
        self.max_model_len, self.prompt_tokens = max_model_len, prompt_tokens
        if prompt_tokens > max_model_len:
            reason = "which exceeds this limit even without any output tokens"
        else:
            reason = "which leaves no room for any output tokens"
        super().__init__(f"This model's maximum context length is {max_model_len} tokens. However, your prompt "
                         f"contains {prompt_tokens} input tokens, {reason}. Please reduce the length of the input "
                         "prompt.")


class ParseError(SelfSpecError):
    pass


class RunNotFound(SelfSpecError):
    pass


class RunStateConflict(SelfSpecError):
    """The run is not in a state that allows this action (e.g. resume of a completed run)."""


class TooManyRuns(SelfSpecError):
    """The server already drives as many runs as `SELFSPEC_API_MAX_ACTIVE_RUNS` allows (429)."""


class EvaluationNotFound(SelfSpecError):
    pass


class RequestFieldError(ConfigError):
    """A request body that failed validation, with one entry per bad field (`loc` is the field path)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"[{'.'.join(str(p) for p in e['loc'])}] {e['msg']}" for e in errors))


class IdempotencyKeyReused(ConfigError):
    """An `Idempotency-Key` sent again with a different request body."""


class StageError(SelfSpecError):
    def __init__(self, stage: str, item_id: str, message: str) -> None:
        self.stage, self.item_id = stage, item_id
        super().__init__(f"stage {stage!r}, item {item_id!r}: {message}")


# The service was not reached, did not answer in time, or answered "not now" (429 / 5xx).
RETRYABLE: tuple[type[BackendError], ...] = (BackendUnavailable, BackendTimeout, BackendOverloaded)
