"""What the Hugging Face hub's refusals of an ``hf://`` URL become: one line that says which and what to do.

``huggingface_hub``'s file system turns a repository it may not read, and a
revision it does not find, into a plain ``FileNotFoundError`` (the hub's own
error is its ``__cause__``), and a request made with ``HF_HUB_OFFLINE=1`` into a
``ConnectionError``. Read as any store's, those would be "no such object" and
"the request failed after retries: check the network", which send the user the
wrong way: the hub answers 401 for a private repository asked without a token
exactly as for one that does not exist, so the fix to name is the token, and
an offline switch is fixed by unsetting it, not by the network; a token the hub
does not know is named as such. The line names the repository, the revision
and whether a token was sent, never the token.
"""

from __future__ import annotations

import os
import re

from goldfish_prep.errors import InputError
from goldfish_prep.readers.redact import scrub

#: the variables with which huggingface_hub refuses every request (it reads them once, when imported)
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = {"1", "ON", "YES", "TRUE"}
_DATASET_URL = "hf://datasets/OWNER/NAME/PATH"
#: hf://[datasets/|spaces/]OWNER/NAME[@REVISION]/...; a revision under refs/ has a slash of its own
_URL = re.compile(r"hf://(?P<kind>datasets/|spaces/|models/)?(?P<id>[^/@]+/[^/@]+)(?:@(?P<revision>refs/(?:pr|convert)/[^/]+|[^/]+))?")


def hub_error(shown: str, exc: BaseException) -> InputError | None:
    """The one line for the hub's refusal behind ``exc`` (a repository, a revision, offline), or None for others.

    >>> hub_error("hf://datasets/o/n/a.jsonl", ValueError("x")) is None
    True
    """
    try:
        from huggingface_hub import errors
    except ImportError:
        return None
    chain = _chain(exc)
    if any(isinstance(seen, errors.OfflineModeIsEnabled) for seen in chain):
        variable = next((name for name in _OFFLINE_VARIABLES if os.environ.get(name, "").strip().upper() in _TRUE), _OFFLINE_VARIABLES[0])
        return InputError(
            shown, f"hub access is off ({variable}=1)", f"Unset {variable} (or set it to 0) to read hf:// URLs", "hub-unavailable"
        )
    for seen in chain:
        if isinstance(seen, errors.RevisionNotFoundError):
            kind, repo_id, revision = _repository(shown)
            return InputError(
                shown,
                f"the {kind} repository {repo_id} has no revision {revision!r} ({_status(seen)} Revision Not Found)",
                "Check the revision after @: a branch, a tag or a commit id",
                "missing-input",
            )
        if isinstance(seen, errors.RepositoryNotFoundError):
            return _closed_or_missing(shown, seen)
        if isinstance(seen, errors.HfHubHTTPError) and _status(seen) == "401":  # a token the hub does not know
            said = scrub(" ".join(str(getattr(seen, "server_message", None) or "Unauthorized").split()))
            return InputError(
                shown,
                f"the hub refused the token sent (401 {said})",
                "Check HF_TOKEN (or the token `hf auth login` saved): the hub does not take it",
                "remote-denied",
            )
    return None


def changed_on_the_hub(shown: str) -> InputError:
    """The one line for a hub file whose git blob id is no longer the one the run listed: a commit replaced it.

    A hub file has no ETag in its listing (``remote._version`` compares the blob id), and the URL names a branch
    unless a commit follows ``@``: the fix that holds is to pin one.

    >>> print(changed_on_the_hub("hf://datasets/o/n@main/data/a.jsonl").fix.split("), ")[0])
    Name a commit after @ to read one version (hf://datasets/o/n@COMMIT/data/a.jsonl
    """
    return InputError(
        shown,
        "the file changed on the hub while mask read it (a commit gave it another blob id than the one listed at the start of the run)",
        f"Name a commit after @ to read one version ({_pinned(shown)}), or rerun once the branch holds still; "
        "--resume keeps the shards made from it only if its bytes are as they were",
        "remote-changed",
    )


def no_match(shown: str) -> InputError:
    """The one line for a pattern that matches no file of a hub repository (which has no bucket to check).

    >>> print(no_match("hf://o/n@v1/*.csv"))
    hf://o/n@v1/*.csv: the pattern matches no file. Check the pattern and the path in the model repository o/n at revision 'v1'
    """
    kind, repo_id, revision = _repository(shown)
    return InputError(
        shown,
        "the pattern matches no file",
        f"Check the pattern and the path in the {kind} repository {repo_id} at revision {revision!r}",
        "missing-input",
    )


def _pinned(shown: str) -> str:
    """``shown`` with ``@COMMIT`` for its revision: the form that reads one version of the repository."""
    match = _URL.match(shown)
    if match is None:
        return _DATASET_URL.replace("/PATH", "@COMMIT/PATH")
    return f"{shown[: match.end('id')]}@COMMIT{shown[match.end() :]}"


def _closed_or_missing(shown: str, exc: BaseException) -> InputError:
    """A repository the hub will not show: it does not exist, or this caller may not read it (the hub does not say which)."""
    kind, repo_id, _ = _repository(shown)
    response = getattr(exc, "response", None)
    request = getattr(response, "request", None)
    token_sent = request is not None and "authorization" in request.headers
    status = f"{_status(exc)} Repository Not Found"
    if token_sent:
        cause = (
            f"the hub shows no {kind} repository {repo_id} to the token sent: it does not exist, or the token may not read it ({status})"
        )
        fix = "Check the repository id, and that the token (HF_TOKEN or hf auth login) may read it; a gated one needs access granted on its page"
    else:
        cause = f"the hub shows no {kind} repository {repo_id} without a token: it does not exist, or it is private or gated ({status})"
        fix = "Check the repository id; for a private or gated repository set HF_TOKEN (or run `hf auth login`)"
    if kind == "model":  # "hf://owner/name/..." names a model: a dataset's URL is often meant
        fix += f"; a dataset's URL is {_DATASET_URL}"
    return InputError(shown, cause, fix, "missing-input")


def _repository(shown: str) -> tuple[str, str, str]:
    """(kind, repository id, revision) of an hf:// URL (huggingface_hub's own parser is recent: not relied on).

    >>> _repository("hf://datasets/o/n@refs/pr/1/data/a.jsonl"), _repository("hf://o/n/a.jsonl")
    (('dataset', 'o/n', 'refs/pr/1'), ('model', 'o/n', 'main'))
    """
    match = _URL.match(shown)
    if match is None:
        return "", shown, "main"
    kind = (match.group("kind") or "models/").rstrip("s/")
    return kind, match.group("id"), match.group("revision") or "main"


def _status(exc: BaseException) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return str(status) if isinstance(status, int) else scrub(type(exc).__name__)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (a few levels: the providers wrap theirs once or twice)."""
    found: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(found) < 5:
        found.append(seen)
        seen = seen.__cause__ or seen.__context__
    return found
