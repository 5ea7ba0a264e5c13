"""One error tree for needlecast.

    Exception
    ├── ConfigurationError            the setup is wrong; nothing may proceed (kept outside the root on
    │   │                             purpose, so that no `except NeedlecastError` swallows it)
    │   ├── WorkspaceNotFound         no needlecast.toml here or above
    │   └── ProviderAuthError         the ESP refused our credentials (401/403): stop, mark nothing
    └── NeedlecastError
        ├── ContentError(ValueError)          an article that cannot be parsed
        ├── TemplateProblem(ValueError)       a template syntax error or an undefined variable
        │   └── TemplateLimitExceeded         a rendering that builds too much or runs too long
        ├── CampaignFileError(ValueError)     a campaign file that does not validate
        ├── AudienceFileError(ValueError)     an audience file that cannot be read as a table
        ├── InvalidAddress(ValueError)        an email address that does not validate
        ├── TokenInvalid(ValueError)          a forged, truncated or expired signed token
        ├── NotFound(LookupError)             a named thing (contact, template, message) does not exist
        ├── InvalidRequest(ValueError)        a request that cannot be done as asked (a sequence sent as a
        │                                     broadcast, an unknown variant): the message says what to ask
        │   ├── AddressErased                 an address erased on request, offered again: never stored again
        │   └── SettingsRejected              a console settings change refused, a problem per form field
        ├── CampaignBlocked                   lint found errors and the campaign file records no sign-off
        ├── AuthenticationFailed              wrong password, unknown or disabled account, bad API key
        ├── PermissionDenied                  the actor's role or scopes do not allow the action
        ├── Throttled                         too many attempts: retry after `retry_after` seconds
        ├── WebhookRejected                   a webhook call that is not a genuine, fresh, signed one
        ├── EventFormatError(ValueError)      a webhook body that is not a JSON array of event objects
        ├── BodyTooDeep(ValueError)           a JSON body nested deeper than any genuine one
        ├── BookingSystemUnavailable          the booking system's API failed: the delivery is retried
        └── DeliveryError                     a send did not complete
            ├── PayloadError(ValueError)      a batch the provider would refuse (too many recipients...)
            ├── TransportError                timeout, refused or dropped connection: retryable
            └── ProviderError                 the ESP answered with an error status
                ├── RateLimited               429: retry after `retry_after` seconds
                ├── ProviderUnavailable       5xx: retryable
                └── RequestRejected           400 and other 4xx: the batch fails, the reasons are kept

Every error prints what went wrong and what to do about it. Errors raised by libraries are translated
in exactly one place each (`raise ... from err`).
"""

from __future__ import annotations

from collections.abc import Sequence


class ConfigurationError(Exception):
    """The installation or workspace is misconfigured. The message says how to fix it."""


class WorkspaceNotFound(ConfigurationError):
    """No workspace (a folder with needlecast.toml) was found."""


class NeedlecastError(Exception):
    """Root of needlecast's own runtime errors."""


class ContentError(NeedlecastError, ValueError):
    """An article could not be turned into sections."""


class TemplateProblem(NeedlecastError, ValueError):
    """A template failed to compile or render.

    `template` and `line` locate the problem when they are known.
    """

    def __init__(self, message: str, *, template: str | None = None, line: int | None = None) -> None:
        self.template = template
        self.line = line
        where = template or "<template>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class TemplateLimitExceeded(TemplateProblem):
    """A rendering passed one of the sandbox's resource limits (`needlecast.templating.limits`): a text, a
    list or a number too large, too much output, or the deadline. `problem` is the message without the
    place (the sandbox raises it placeless; the renderer adds the template and line)."""

    def __init__(self, problem: str, *, template: str | None = None, line: int | None = None) -> None:
        self.problem = problem
        super().__init__(problem, template=template, line=line)


class CampaignFileError(NeedlecastError, ValueError):
    """A campaign file failed validation: names the file, the field and the fix."""

    def __init__(self, path: str, field: str, problem: str, fix: str, *, campaign_id: str = "") -> None:
        self.path = path
        self.field = field
        self.problem = problem
        self.fix = fix
        self.campaign_id = campaign_id  # when the file's id could be read despite the problem
        super().__init__(f"{path}: field '{field}': {problem}. Fix: {fix}")


class AudienceFileError(NeedlecastError, ValueError):
    """An audience file is missing, unreadable, empty or not a table."""


class InvalidAddress(NeedlecastError, ValueError):
    """An email address is not valid; the message says why."""


class TokenInvalid(NeedlecastError, ValueError):
    """A signed token is forged, truncated, of the wrong kind or expired."""


class NotFound(NeedlecastError, LookupError):
    """A named object does not exist.

    `what` is its kind in plain words ("campaign", "contact", "email template") and `name` the id that was
    asked for, as it was given, when the raiser knows them; `field` is the request field that named it when
    that is not a path parameter. The web app's faces phrase a 404 from these (the console's page, the API's
    error naming the field); the message, which may name files or commands, is for the command line.
    """

    def __init__(self, message: str, *, what: str = "", name: str = "", field: str = "") -> None:
        self.what = what
        self.name = name
        self.field = field
        super().__init__(message)


class InvalidRequest(NeedlecastError, ValueError):
    """A request that cannot be carried out as asked; the message says what would work instead."""


class SettingsRejected(InvalidRequest):
    """A settings change the console refused: `problems` maps each form field to what is wrong with it, in
    words (never a file's path), so each shows beside its field."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in self.problems.items()))


class AddressErased(InvalidRequest):
    """The address belongs to a person erased on request: it is never stored again (the API answers 409: the
    request is well formed, the store's state refuses it)."""


class CampaignBlocked(NeedlecastError):
    """A campaign may not send: lint reports errors and its file records no sign-off."""


class AuthenticationFailed(NeedlecastError):
    """The credentials (a password, a session, an API key) do not name an active account."""


class PermissionDenied(NeedlecastError):
    """The actor may not do this: the message names the action and who may."""


class Throttled(NeedlecastError):
    """Too many attempts (log-ins, requests): wait `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class WebhookRejected(NeedlecastError):
    """The request is not a genuine, fresh SendGrid webhook call (signature, timestamp)."""


class EventFormatError(NeedlecastError, ValueError):
    """A webhook body is not a JSON array of event objects."""


class BookingSystemUnavailable(NeedlecastError):
    """The booking system's API (Acuity's, for an appointment's details) failed or could not be reached."""


class BodyTooDeep(NeedlecastError, ValueError):
    """A JSON body nests arrays and objects deeper than the limit: refused before it is parsed."""


class DeliveryError(NeedlecastError):
    """A send to the email provider did not complete."""


class SenderFenced(DeliveryError):
    """This sender was declared dead (silent past the lease): its rows were recovered by another process, and
    it must not post again."""


class PayloadError(DeliveryError, ValueError):
    """A batch that the provider would refuse as it stands (more than 1000 recipients, an address twice,
    `send_at` too far ahead). Nothing was sent."""


class TransportError(DeliveryError):
    """The request got no answer (timeout, refused, reset). Retryable.

    `ambiguous` is True when the request may have reached the provider (a read timeout, a connection dropped
    after sending): it may have been accepted even though we never heard so.
    """

    def __init__(self, message: str, *, ambiguous: bool) -> None:
        self.ambiguous = ambiguous
        super().__init__(message)


class ProviderError(DeliveryError):
    """The provider answered with an error status. Carries the status and the provider's error list."""

    def __init__(self, status: int, errors: Sequence[str] = (), message: str | None = None) -> None:
        self.status = status
        self.errors = list(errors)
        detail = "; ".join(self.errors) if self.errors else "no details given"
        super().__init__(message or f"provider answered HTTP {status}: {detail}")


class RateLimited(ProviderError):
    """HTTP 429: wait `retry_after` seconds, then retry."""

    def __init__(self, status: int, errors: Sequence[str] = (), retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(status, errors)


class ProviderUnavailable(ProviderError):
    """HTTP 5xx: the provider failed; retry with backoff."""


class RequestRejected(ProviderError):
    """HTTP 400 (or another 4xx that is not auth or rate limit): the request itself is wrong."""


class ProviderAuthError(ConfigurationError):
    """HTTP 401/403: the API key is wrong or lacks the Mail Send permission. Nothing was sent."""

    def __init__(self, status: int, errors: Sequence[str] = ()) -> None:
        self.status = status
        self.errors = list(errors)
        detail = "; ".join(self.errors) if self.errors else "no details given"
        super().__init__(
            f"SendGrid refused the API key (HTTP {status}: {detail}). "
            "Check SENDGRID_API_KEY and that the key has the 'Mail Send' permission."
        )
