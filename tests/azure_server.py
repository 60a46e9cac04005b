"""A real Azure Blob protocol server for the tests: Azurite, Microsoft's own emulator.

``AzureServer`` runs ``azurite-blob`` (npm's ``azurite``, installed by
``tests/trainers/setup.sh`` into ``$GOLDFISH_TRAINERS_DIR/azurite``) as its own
process on 127.0.0.1 and a free port, keeping blobs in memory. The code under
test reaches it exactly as a user reaches a storage account, configured only by
``AZURE_STORAGE_CONNECTION_STRING`` (``env``), which adlfs reads; test setup
(containers, blobs) and every check of what was written go through
azure-storage-blob, never through the code under test.

Azurite serves one account, ``devstoreaccount1``, with a key every Azure
developer knows (it is in Microsoft's documentation): it checks each request's
Shared Key signature against it, so a wrong key is refused as on Azure.

Without Azurite the tests skip, saying how to install it; in CI
(``GOLDFISH_TRAINERS_REQUIRED=1``, set by .ci/run) they fail instead, as the
trainer tests do (``tests/trainers/venvs.py``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess, free_port
from tests.trainers.venvs import venv_root

VERSION = "3.37.0"
ACCOUNT = "devstoreaccount1"
#: Azurite's fixed account key (public: Microsoft documents it for the emulator)
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL = "bash tests/trainers/setup.sh azurite"


def azurite_blob() -> Path:
    """The ``azurite-blob`` that setup.sh installs; skips (fails in CI) when it is not there."""
    installed = venv_root() / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if installed.is_file():
        return installed
    message = f"the Azure tests need Azurite {VERSION} at {installed.parent.parent.parent}: run `{INSTALL}` (npm)"
    if os.environ.get("GOLDFISH_TRAINERS_REQUIRED") == "1":
        pytest.fail(message + " (GOLDFISH_TRAINERS_REQUIRED=1: CI must run the Azure tests)")
    pytest.skip(message)


class AzureServer:
    """Azurite's blob service in a child process, for one test session."""

    def __init__(self, program: Path) -> None:
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"{self.address}/{ACCOUNT}"  # the account's blob endpoint (Azurite names the account in the path)
        self._workspace = tempfile.mkdtemp(prefix="goldfish-azurite-")  # its working folder: nothing is written there
        self._server = ServerProcess(
            [str(program), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--inMemoryPersistence"]
            + ["--disableTelemetry", "--skipApiVersionCheck", "--silent"],
            f"{self.endpoint}?comp=list",  # an unsigned request: refused (403) once it is up
            "Azurite",
            cwd=self._workspace,
        )

    @property
    def pid(self) -> int:
        return self._server.pid

    def connection_string(self, key: str = KEY, endpoint: str | None = None) -> str:
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};BlobEndpoint={endpoint or self.endpoint};"

    def env(self, key: str = KEY, endpoint: str | None = None) -> dict[str, str]:
        """The variables a user sets to reach this account (``key``: another account key; ``endpoint``: another address)."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string(key, endpoint)}

    def client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string())

    def create_container(self, name: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.client().create_container(name)
        except ResourceExistsError:
            pass

    def blobs(self, container: str, prefix: str) -> dict[str, bytes]:
        """Every blob below ``prefix`` (a folder), by its name relative to it."""
        client = self.client().get_container_client(container)
        return {
            blob.name[len(prefix) + 1 :]: client.download_blob(blob.name).readall()
            for blob in client.list_blobs(name_starts_with=prefix + "/")
        }

    def upload(self, container: str, folder: Path, prefix: str = "") -> None:
        """Every file below ``folder`` as ``prefix`` + its relative path (the container is created if new)."""
        self.create_container(container)
        client = self.client().get_container_client(container)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                client.upload_blob(prefix + path.relative_to(folder).as_posix(), path.read_bytes(), overwrite=True)

    def empty(self, container: str) -> None:
        client = self.client().get_container_client(container)
        for blob in client.list_blobs():
            client.delete_blob(blob.name)

    def stop(self) -> None:
        self._server.stop()
        shutil.rmtree(self._workspace, ignore_errors=True)


@pytest.fixture(scope="session")
def azure_server() -> Iterator[AzureServer]:
    program = azurite_blob()
    pytest.importorskip("adlfs", reason="az:// URLs need adlfs (pip install -e '.[test]')")
    server = AzureServer(program)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def azure_env(azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch) -> AzureServer:
    """The server, with the environment a user would set to reach it (and no other Azure configuration)."""
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    for name, value in azure_server.env().items():
        monkeypatch.setenv(name, value)
    return azure_server
