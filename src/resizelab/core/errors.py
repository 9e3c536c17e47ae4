"""Exception types whose message is meant to be shown to a user as one line."""


class ResizelabError(Exception):
    """A user-facing error: the message says what was wrong and what would be right."""


class ConfigError(ResizelabError, ValueError):
    """An option value or combination that cannot run."""


class DataUnavailable(ResizelabError):
    """A dataset is neither on disk nor downloadable."""


class WeightsError(ResizelabError):
    """Weights are missing, unreadable or do not fit the model."""


class RunFailed(ResizelabError):
    """A run started but could not produce a result (diverged, out of memory, ...)."""


class MissingDependency(ResizelabError, ImportError):
    """An optional integration (pandas, MLflow, ...) was asked for but is not installed."""


def reason(error: BaseException) -> str:
    """One line for a failure: a ResizelabError's message as it is, anything else with its type in front."""
    text = str(error).splitlines()[0] if str(error) else ""
    return text if isinstance(error, ResizelabError) else f"{type(error).__name__}: {text}"


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an error's message (at most `limit` characters), or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
