"""A Hugging Face hub for the tests: dataset repositories served from local folders over the hub's HTTP API.

No emulator of the hub is packaged, and the machines that run the suite reach
no hub, so this is one, written from what ``huggingface_hub.HfFileSystem``
(1.x) sends: the endpoints below, with the answers' fields, headers, errors and
pagination as the hub gives them. It runs in a child process
(``ServerProcess``), stdlib only, and the code under test reaches it as a user
reaches a private hub, by ``HF_ENDPOINT=http://127.0.0.1:PORT`` (and
``HF_TOKEN`` for a private repository).

- ``GET /api/datasets/{repo}`` and ``.../revision/{rev}``: the repository's
  info (``sha`` is the revision's commit); ``HfFileSystem`` asks it once per
  repository and revision before anything else.
- ``GET /api/datasets/{repo}/tree/{rev}[/{path}]?recursive=&expand=``: a
  folder's entries (``oid``, ``size``, ``lfs`` for files stored in LFS),
  ``page_size`` per page, the next page named by a ``Link: <...>; rel="next"``
  header, as the hub pages (1000 entries, 50 with ``expand``).
- ``POST /api/datasets/{repo}/paths-info/{rev}``: entries of the paths named
  (form fields ``paths`` and ``expand``), unknown ones left out.
- ``GET|HEAD /datasets/{repo}/resolve/{rev}/{path}``: a file's bytes, whole or
  one ``Range`` (206 with ``Content-Range``; 416 past the end), with
  ``X-Repo-Commit`` and ``ETag`` (the git blob id). A file stored in LFS is a
  302 to a signed URL under ``/cdn/`` (its ``X-Linked-Size`` and
  ``X-Linked-Etag``, the sha256), which serves the bytes, as the hub sends such
  files to its CDN.

Errors carry the hub's ``X-Error-Code`` / ``X-Error-Message`` headers and a
JSON ``{"error": ...}`` body: an unknown or private repository is 401
``RepoNotFound`` without a token (the hub does not tell them apart) and 404 with
one; a token the hub does not know is 401 "Invalid credentials in Authorization
header"; an unknown revision 404 ``RevisionNotFound``; a missing path 404
``EntryNotFound``. A revision is a branch name of the configuration, or its
commit id.

A test can have a commit land while a run reads a file (``replace``: the file
is swapped for another once N reads of it were served).

Every request is appended to a log (one JSON object a line: method, path,
``Range``, status, body bytes sent, whether a token came with it; never the
token), which tests read to count requests and bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: files the hub keeps in LFS whatever their size (a few of a new dataset repository's .gitattributes patterns)
LFS_SUFFIXES = (".parquet", ".arrow", ".gz", ".zst", ".bz2", ".xz", ".zip", ".tar")
#: larger files go to LFS whatever their name (the hub refuses larger plain git files)
LFS_ABOVE = 10 << 20
_DATE = "2026-12-06T00:00:00.000Z"
_EXPAND_PAGE = 50


class HubError(Exception):
    """An error answer: status, ``X-Error-Code`` (or None) and message."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Repository:
    """One dataset repository: its branches, each a local folder, read afresh on every request."""

    def __init__(self, repo_id: str, revisions: dict[str, str], private: bool) -> None:
        self.repo_id, self.private = repo_id, private
        self.revisions = {name: Path(folder) for name, folder in revisions.items()}
        self._oids: dict[tuple[str, int, int], tuple[str, dict[str, Any] | None]] = {}

    def folder(self, revision: str) -> tuple[Path, str]:
        """(the folder of ``revision``, its commit id); ``revision`` is a branch or a commit id."""
        for name, folder in self.revisions.items():
            commit = self.commit(name)
            if revision in (name, commit):
                return folder, commit
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def commit(self, name: str) -> str:
        """A commit id for the branch's current content (sha1 of its paths and blob ids)."""
        digest = hashlib.sha1(f"{self.repo_id}@{name}".encode())
        for path in self.files(self.revisions[name]):
            digest.update(f"{path.relative_to(self.revisions[name]).as_posix()} {self.blob(path)[0]}\n".encode())
        return digest.hexdigest()

    @staticmethod
    def files(folder: Path) -> list[Path]:
        return sorted(path for path in folder.rglob("*") if path.is_file())

    def blob(self, path: Path) -> tuple[str, dict[str, Any] | None]:
        """(git blob id, LFS fields or None): a file in LFS is a pointer in git, whose blob id is the pointer's."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._oids:
            data = path.read_bytes()
            lfs = None
            if path.name.endswith(LFS_SUFFIXES) or len(data) > LFS_ABOVE:
                sha256 = hashlib.sha256(data).hexdigest()
                data = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {stat.st_size}\n".encode()
                lfs = {"oid": sha256, "size": stat.st_size, "pointerSize": len(data)}
            self._oids[key] = (hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(), lfs)
        return self._oids[key]

    def entry(self, root: Path, path: Path, expand: bool, commit: str) -> dict[str, Any]:
        """A tree entry as the hub lists it."""
        relative = path.relative_to(root).as_posix()
        if path.is_dir():
            tree = hashlib.sha1(relative.encode() + b"".join(self.blob(p)[0].encode() for p in self.files(path))).hexdigest()
            found: dict[str, Any] = {"type": "directory", "oid": tree, "size": 0, "path": relative}
        else:
            oid, lfs = self.blob(path)
            found = {"type": "file", "oid": oid, "size": path.stat().st_size, "path": relative}
            if lfs is not None:
                found["lfs"] = lfs
        if expand:
            found["lastCommit"] = {"id": commit, "title": "Upload", "date": _DATE}
        return found

    def info(self, revision: str) -> dict[str, Any]:
        folder, commit = self.folder(revision)
        owner = self.repo_id.split("/")[0]
        return {
            "_id": hashlib.sha1(self.repo_id.encode()).hexdigest()[:24],
            "id": self.repo_id,
            "author": owner,
            "sha": commit,
            "lastModified": _DATE,
            "createdAt": _DATE,
            "private": self.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [{"rfilename": path.relative_to(folder).as_posix()} for path in self.files(folder)],
        }

    def tree(self, revision: str, path: str, recursive: bool, expand: bool) -> list[dict[str, Any]]:
        folder, commit = self.folder(revision)
        start = folder / path if path else folder
        if not start.is_dir() or _hidden_from_git(folder, start):
            raise HubError(404, "EntryNotFound", f'{path} does not exist on "{revision}"')
        below = start.rglob("*") if recursive else start.iterdir()
        return [self.entry(folder, p, expand, commit) for p in sorted(below) if not _hidden_from_git(folder, p)]

    def paths_info(self, revision: str, paths: list[str], expand: bool) -> list[dict[str, Any]]:
        folder, commit = self.folder(revision)
        wanted = [folder / path for path in paths]
        return [self.entry(folder, p, expand, commit) for p in wanted if p.exists() and not _hidden_from_git(folder, p)]


def _hidden_from_git(root: Path, path: Path) -> bool:
    """A ``.git`` folder is not part of the tree (a repository cloned into the folder keeps one)."""
    return ".git" in path.relative_to(root).parts


class Hub:
    """The repositories, the token that opens the private ones, and the request log."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.repos = {
            repo_id: Repository(repo_id, spec["revisions"], spec.get("private", False)) for repo_id, spec in config["repos"].items()
        }
        self.token: str | None = config.get("token")
        self.page_size: int = config.get("page_size", 1000)
        self._log = Path(config["log"])
        self._lock = threading.Lock()
        self._key = os.urandom(16)
        #: file -> {"with": another file, "after": N}: a commit that replaces the file once N reads of it were served
        self._commits: dict[str, dict[str, Any]] = dict(config.get("replace", {}))
        self._reads: dict[str, int] = {}

    def repository(self, kind: str, repo_id: str, authorization: str | None) -> Repository:
        """The repository, if this request may see it (the hub's answers for a missing or closed one); only
        dataset repositories are served, so a model or a space is one that does not exist."""
        sent = authorization.removeprefix("Bearer ").strip() if authorization else None
        if sent is not None and sent != self.token:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        repo = self.repos.get(repo_id) if kind == "datasets" else None
        if repo is None or (repo.private and sent is None):
            if sent is None:  # an anonymous caller is not told whether the repository exists
                raise HubError(401, "RepoNotFound", "Invalid username or password.")
            raise HubError(404, "RepoNotFound", "Repository not found")
        return repo

    def read(self, file: Path) -> bytes:
        """A file's bytes for one answer; a commit set up for it lands right after, before the caller has them."""
        data = file.read_bytes()
        with self._lock:
            self._reads[str(file)] = self._reads.get(str(file), 0) + 1
            commit = self._commits.get(str(file))
            if commit is not None and self._reads[str(file)] == commit["after"]:
                os.replace(commit["with"], file)
        return data

    def signature(self, sha256: str) -> str:
        return hmac.new(self._key, sha256.encode(), "sha256").hexdigest()

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock, self._log.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    """One request: routed by path, answered with the hub's status, headers and body."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the hub: every answer has a Content-Length
    server: HubHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the record

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        self._status, self._sent = 0, 0
        length = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(length) if length else b""
        try:
            self._route()
        except HubError as error:
            self._json(
                error.status,
                {"error": error.message},
                {"X-Error-Message": error.message, **({"X-Error-Code": error.code} if error.code else {})},
            )
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.server.hub.record(
            {
                "method": self.command,
                "path": urllib.parse.unquote(self.path.split("?", 1)[0]),
                "query": self.path.split("?", 1)[1] if "?" in self.path else "",
                "range": self.headers.get("Range"),
                "status": self._status,
                "sent": self._sent,
                "token": self.headers.get("Authorization") is not None,
            }
        )

    def _route(self) -> None:
        hub = self.server.hub
        url = urllib.parse.urlsplit(self.path)
        query = {name: values[-1] for name, values in urllib.parse.parse_qs(url.query).items()}
        parts = url.path.split("/")  # the revision and a tree path come percent-encoded whole: split first, unquote after
        if parts[1:2] == ["cdn"] and len(parts) == 3:
            return self._cdn(parts[2], query)
        if parts[1:2] == ["api"] and parts[2:3] in (["models"], ["datasets"], ["spaces"]) and len(parts) >= 5:
            repo = hub.repository(parts[2], f"{parts[3]}/{parts[4]}", self.headers.get("Authorization"))
            action, rest = (parts[5], parts[6:]) if len(parts) > 5 else ("revision", ["main"])
            revision = urllib.parse.unquote(rest[0]) if rest else "main"
            if action == "revision" and self.command == "GET":
                return self._json(200, repo.info(revision))
            if action == "tree" and self.command == "GET":
                path = urllib.parse.unquote("/".join(rest[1:])).strip("/")
                return self._tree(repo, revision, path, query)
            if action == "paths-info" and self.command == "POST":
                fields = self._form()
                return self._json(200, repo.paths_info(revision, fields.get("paths", []), _true(fields.get("expand", ["false"])[-1])))
        if parts[1:2] == ["datasets"] and len(parts) >= 6 and parts[4] == "resolve" and self.command in ("GET", "HEAD"):
            repo = hub.repository("datasets", f"{parts[2]}/{parts[3]}", self.headers.get("Authorization"))
            return self._resolve(repo, urllib.parse.unquote(parts[5]), urllib.parse.unquote("/".join(parts[6:])))
        if url.path == "/api/agent-harnesses":  # the client's best-effort look-up (for its User-Agent): none known here
            return self._json(200, {"standardEnvVars": [], "harnesses": {}})
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

    def _form(self) -> dict[str, list[str]]:
        """The POST body's fields: form-encoded, as huggingface_hub sends them, or JSON."""
        if self.headers.get("Content-Type", "").startswith("application/json"):
            loaded = json.loads(self._body or b"{}")
            return {name: value if isinstance(value, list) else [str(value).lower()] for name, value in loaded.items()}
        return urllib.parse.parse_qs(self._body.decode(), keep_blank_values=True)

    def _tree(self, repo: Repository, revision: str, path: str, query: dict[str, str]) -> None:
        expand = _true(query.get("expand", "false"))
        entries = repo.tree(revision, path, _true(query.get("recursive", "false")), expand)
        size = min(self.server.hub.page_size, _EXPAND_PAGE) if expand else self.server.hub.page_size
        start = int(base64.urlsafe_b64decode(query["cursor"]).decode()) if "cursor" in query else 0
        headers = {}
        if start + size < len(entries):
            cursor = base64.urlsafe_b64encode(str(start + size).encode()).decode()
            following = urllib.parse.urlencode({**query, "cursor": cursor})
            headers["Link"] = f'<http://{self.headers["Host"]}{self.path.split("?", 1)[0]}?{following}>; rel="next"'
        self._json(200, entries[start : start + size], headers)

    def _resolve(self, repo: Repository, revision: str, path: str) -> None:
        folder, commit = repo.folder(revision)
        file = folder / path
        if not path or not file.is_file() or _hidden_from_git(folder, file):
            raise HubError(404, "EntryNotFound", "Entry not found")
        oid, lfs = repo.blob(file)
        headers = {"X-Repo-Commit": commit}
        if lfs is not None:  # the hub sends the caller to its CDN, with a signed URL
            signature = self.server.hub.signature(lfs["oid"])
            where = f"http://{self.headers['Host']}/cdn/{lfs['oid']}?{urllib.parse.urlencode({'X-Amz-Signature': signature})}"
            headers |= {"Location": where, "ETag": f'"{oid}"', "X-Linked-Size": str(lfs["size"]), "X-Linked-Etag": f'"{lfs["oid"]}"'}
            return self._send(302, b"", headers, "text/plain")
        self._bytes(self.server.hub.read(file), headers | {"ETag": f'"{oid}"'})

    def _cdn(self, sha256: str, query: dict[str, str]) -> None:
        if not hmac.compare_digest(query.get("X-Amz-Signature", ""), self.server.hub.signature(sha256)):
            return self._send(403, b"<Error><Code>AccessDenied</Code></Error>", {}, "application/xml")
        for repo in self.server.hub.repos.values():
            for folder in repo.revisions.values():
                for file in repo.files(folder):
                    lfs = repo.blob(file)[1]
                    if lfs is not None and lfs["oid"] == sha256:
                        return self._bytes(self.server.hub.read(file), {"ETag": f'"{sha256}"'})
        self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", {}, "application/xml")

    def _bytes(self, data: bytes, headers: dict[str, str]) -> None:
        """The whole file, or the one range asked for (``bytes=A-B``, ``bytes=A-``, ``bytes=-N``)."""
        headers = {**headers, "Accept-Ranges": "bytes"}
        asked = self.headers.get("Range")
        if not asked:
            return self._send(200, data, headers, "application/octet-stream")
        first, _, last = asked.removeprefix("bytes=").partition("-")
        total = len(data)
        start, end = (max(total - int(last), 0), total - 1) if not first else (int(first), min(int(last) if last else total - 1, total - 1))
        if start >= total or start > end:
            return self._send(416, b"", {**headers, "Content-Range": f"bytes */{total}"}, "text/plain")
        self._send(206, data[start : end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{total}"}, "application/octet-stream")

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), headers or {}, "application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, headers: dict[str, str], content_type: str) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self._sent = len(body)


def _true(value: str) -> bool:
    return value.strip().lower() in ("1", "true")


class HubHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, hub: Hub) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.hub = hub


# --- the test side: the server as a child process, and what a user sets to reach it -----------------------


class HubServer:
    """The hub in a child process (``python -m tests.hub_server CONFIG``), serving ``repos``.

    ``repos``: repo id -> {"revisions": {branch: folder}, "private": bool}; ``token`` opens the private ones;
    ``replace``: file -> {"with": another file, "after": N}, a commit pushed while a run reads the file.
    """

    def __init__(
        self, workdir: Path, repos: dict[str, Any], token: str | None = None, page_size: int = 1000, replace: dict[str, Any] | None = None
    ) -> None:
        from tests.server_process import ServerProcess, free_port

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "requests.jsonl"
        self.home = workdir / "hf-home"  # no token saved there: a run sees only the HF_TOKEN it is given
        self.home.mkdir(exist_ok=True)
        config = workdir / "hub.json"
        config.write_text(
            json.dumps(
                {"port": self.port, "repos": repos, "token": token, "page_size": page_size, "log": str(self.log), "replace": replace or {}}
            )
        )
        root = Path(__file__).resolve().parents[1]
        self._server = ServerProcess(
            [sys.executable, "-m", "tests.hub_server", str(config)], f"{self.endpoint}/api/datasets/-/-", "hub", cwd=root
        )

    def env(self, token: str | None = None, offline: bool = False) -> dict[str, str]:
        """What a user sets to reach this hub (and ``HF_TOKEN`` when ``token``): hub access on, unless ``offline``."""
        found = {name: value for name, value in os.environ.items() if name not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT")}
        found |= {"HF_ENDPOINT": self.endpoint, "HF_HUB_OFFLINE": "1" if offline else "0", "HF_HOME": str(self.home)}
        return found | ({"HF_TOKEN": token} if token else {})

    def requests(self) -> list[dict[str, Any]]:
        """Every request answered since the last ``forget``, in order."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]

    def forget(self) -> None:
        self.log.unlink(missing_ok=True)

    def stop(self) -> None:
        self._server.stop()


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    HubHttpServer(config["port"], Hub(config)).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
