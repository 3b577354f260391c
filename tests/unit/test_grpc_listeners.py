"""The gRPC listeners in-process: TLS, refusing a taken port, switching off, options."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from torchwire.config import Settings, load_settings
from torchwire.devices import GpuAllocator
from torchwire.grpc.generated import inference_pb2_grpc as pb_grpc
from torchwire.grpc.server import GrpcListeners, server_options
from torchwire.registry import ModelRegistry
from torchwire.store import ModelStore

FREE = {"grpc_inference_port": 0, "grpc_management_port": 0}


def listeners(settings: Settings) -> GrpcListeners:
    store = ModelStore(settings, GpuAllocator(0))
    shutil.rmtree(store.work_dir, ignore_errors=True)
    return GrpcListeners(settings, ModelRegistry(), store)


def test_options_follow_the_larger_limit_and_connection_age() -> None:
    settings = load_settings(cli={"max_request_size": 100_000_000,
                                  "grpc_inference_max_connection_age_ms": 60_000}, env={})
    options = dict(server_options(settings, "inference"))
    assert options["grpc.max_receive_message_length"] == 100_000_000
    assert options["grpc.max_send_message_length"] == 64 * 1024 * 1024
    assert options["grpc.max_connection_age_ms"] == 60_000
    assert "grpc.max_connection_age_ms" not in dict(server_options(settings, "management"))
    assert options["grpc.so_reuseport"] == 0


def test_a_taken_port_is_an_error_not_a_shared_port() -> None:
    async def run() -> None:
        first = listeners(replace(Settings(), **FREE))
        await first.start()
        try:
            taken = {"grpc_inference_port": first.ports["inference"],
                     "grpc_management_port": 0}
            with pytest.raises(OSError, match="cannot listen for gRPC on 127.0.0.1"):
                await listeners(replace(Settings(), **taken)).start()
        finally:
            await first.stop(0)

    asyncio.run(run())


def test_switched_off_starts_nothing() -> None:
    async def run() -> None:
        off = listeners(replace(Settings(), enable_grpc=False, **FREE))
        await off.start()
        assert off.servers == [] and off.ports == {}

    asyncio.run(run())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_grpc_over_tls(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    settings = load_settings(cli={"enable_grpc_ssl": True, "private_key_file": key,
                                  "certificate_file": cert, **FREE}, env={})

    async def run() -> str:
        server = listeners(settings)
        await server.start()
        target = f"127.0.0.1:{server.ports['inference']}"
        try:
            creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
            async with grpc.aio.secure_channel(target, creds) as channel:
                reply = await pb_grpc.InferenceAPIsServiceStub(channel).Ping(
                    empty_pb2.Empty(), timeout=10)
            async with grpc.aio.insecure_channel(target) as plain:
                with pytest.raises(grpc.aio.AioRpcError):
                    await pb_grpc.InferenceAPIsServiceStub(plain).Ping(empty_pb2.Empty(),
                                                                       timeout=5)
            return str(reply.health)
        finally:
            await server.stop(0)

    assert "Healthy" in asyncio.run(run())
