"""A Modal control plane in-process, so the real Modal client runs its whole client side offline.

Every object the app defines is loaded by Modal's own code (`app.run()`: its resolver, image loaders with
their layer rules, mount hashing, function and class definitions, `with_options` bindings, spawn, get,
Ctrl-C handling); only the server's answers are made up here: an id for whatever is created, "built" for
every image, no outputs for a spawned call unless a test says otherwise. The servicer is patched with
Modal's own test helper (`modal._utils.grpc_testing.patch_mock_servicer`): an RPC not answered here fails
with UNIMPLEMENTED and its name, and `servicer.intercept()` records every request.

One server per test process: objects looked up by name (Volumes, Secrets) stay hydrated after an app
stops, with the client that loaded them, so that client's server must outlive them.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import grpclib.server
import pytest
from google.protobuf import empty_pb2
from grpclib import GRPCError, Status
from modal._utils.grpc_testing import patch_mock_servicer
from modal_proto import api_grpc, api_pb2

SUCCESS = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)
BUILDER_VERSION = "2025.06"   # the newest image builder version modal 1.3 supports (modal/image.py)


def handle_metadata(name: str, function_type: int, methods: Any, webhook: Any) -> api_pb2.FunctionHandleMetadata:
    """What the server sends back for a function: the client hydrates the function (and its methods) from it."""
    return api_pb2.FunctionHandleMetadata(
        function_name=name, function_type=function_type,
        web_url="https://test--web.modal.run" if webhook.type else "",
        method_handle_metadata={
            method: api_pb2.FunctionHandleMetadata(function_name=f"{name}.{method}", function_type=d.function_type,
                                                   use_method_name=method, is_method=True)
            for method, d in methods.items()})


@patch_mock_servicer
class ModalServer(api_grpc.ModalClientBase):
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.app_done = asyncio.Event()
        # FunctionGetOutputs: called with each request, returns the outputs to send (none: still running)
        self.outputs: Callable[[api_pb2.FunctionGetOutputsRequest], list[api_pb2.FunctionGetOutputsItem]] = lambda r: []
        self.inputs: dict[str, api_pb2.FunctionInput] = {}   # function call id → its (one) input
        self.images: dict[str, api_pb2.Image] = {}            # image id → its definition (layer by layer)

    def new(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids)}"

    def answer_calls(self, reply: Callable[..., Any]) -> None:
        """Every call made from now on returns reply(*args, **kwargs), as if its function had run remotely."""
        from modal._serialization import deserialize, serialize

        answered: set[str] = set(self.inputs)   # calls of earlier tests, whose polls may still come in

        def outputs(request: api_pb2.FunctionGetOutputsRequest) -> list[api_pb2.FunctionGetOutputsItem]:
            call = request.function_call_id
            if call in answered or call not in self.inputs:
                return []
            answered.add(call)
            args, kwargs = deserialize(self.inputs[call].args, None)
            result = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS,
                                           data=serialize(reply(*args, **kwargs)))
            return [api_pb2.FunctionGetOutputsItem(result=result, idx=0, data_format=api_pb2.DATA_FORMAT_PICKLE)]

        self.outputs = outputs

    async def answer(self, stream: Any, message: Any) -> Any:
        request = await stream.recv_message()
        await stream.send_message(message(request) if callable(message) else message)
        return request

    # ---- apps ----
    async def ClientHello(self, stream):
        await self.answer(stream, api_pb2.ClientHelloResponse())

    async def AppCreate(self, stream):
        self.app_done = asyncio.Event()
        await self.answer(stream, api_pb2.AppCreateResponse(app_id=self.new("ap"), app_page_url="https://modal.test/app"))

    async def AppHeartbeat(self, stream):
        await self.answer(stream, empty_pb2.Empty())

    async def AppPublish(self, stream):
        await self.answer(stream, api_pb2.AppPublishResponse())

    async def AppClientDisconnect(self, stream):
        await self.answer(stream, empty_pb2.Empty())
        self.app_done.set()

    async def AppGetLogs(self, stream):
        await stream.recv_message()
        await self.app_done.wait()   # no logs; the stream ends with the app, as the client expects
        await stream.send_message(api_pb2.TaskLogsBatch(app_done=True))

    async def EnvironmentGetOrCreate(self, stream):
        settings = api_pb2.EnvironmentSettings(image_builder_version=BUILDER_VERSION)
        await self.answer(stream, api_pb2.EnvironmentGetOrCreateResponse(
            environment_id=self.new("en"), metadata=api_pb2.EnvironmentMetadata(settings=settings)))

    # ---- images, mounts, volumes, secrets ----
    async def ImageGetOrCreate(self, stream):
        image_id = self.new("im")
        request = await self.answer(stream, api_pb2.ImageGetOrCreateResponse(image_id=image_id, result=SUCCESS))
        self.images[image_id] = request.image

    async def MountGetOrCreate(self, stream):
        await self.answer(stream, api_pb2.MountGetOrCreateResponse(mount_id=self.new("mo")))

    async def MountPutFile(self, stream):
        await self.answer(stream, api_pb2.MountPutFileResponse(exists=True))   # as if uploaded before

    async def VolumeGetOrCreate(self, stream):
        await self.answer(stream, lambda r: api_pb2.VolumeGetOrCreateResponse(
            volume_id=self.new("vo"), metadata=api_pb2.VolumeMetadata(name=r.deployment_name)))

    async def VolumeListFiles(self, stream):
        request = await stream.recv_message()
        raise GRPCError(Status.NOT_FOUND, f"No such file or directory: {request.path}")   # an empty Volume

    async def VolumeGetFile2(self, stream):
        request = await stream.recv_message()
        raise GRPCError(Status.NOT_FOUND, f"No such file: {request.path}")

    async def VolumePutFiles(self, stream):
        await self.answer(stream, empty_pb2.Empty())

    async def SecretGetOrCreate(self, stream):
        await self.answer(stream, lambda r: api_pb2.SecretGetOrCreateResponse(
            secret_id=self.new("st"), metadata=api_pb2.SecretMetadata(name=r.deployment_name)))

    # ---- functions and classes ----
    async def FunctionPrecreate(self, stream):
        await self.answer(stream, lambda r: api_pb2.FunctionPrecreateResponse(
            function_id=r.existing_function_id or self.new("fu"),
            handle_metadata=handle_metadata(r.function_name, r.function_type, r.method_definitions, r.webhook_config)))

    async def FunctionCreate(self, stream):
        def reply(r: api_pb2.FunctionCreateRequest) -> api_pb2.FunctionCreateResponse:
            f = created_function(r)
            return api_pb2.FunctionCreateResponse(
                function_id=r.existing_function_id or self.new("fu"),
                handle_metadata=handle_metadata(f.function_name, f.function_type, f.method_definitions, f.webhook_config))

        await self.answer(stream, reply)

    async def ClassCreate(self, stream):
        await self.answer(stream, api_pb2.ClassCreateResponse(class_id=self.new("cs")))

    async def FunctionBindParams(self, stream):
        await self.answer(stream, lambda r: api_pb2.FunctionBindParamsResponse(
            bound_function_id=self.new("fu"), handle_metadata=api_pb2.FunctionHandleMetadata(function_name="bound")))

    async def FunctionGet(self, stream):
        request = await stream.recv_message()   # nothing is deployed
        raise GRPCError(Status.NOT_FOUND, f"Lookup failed for Function '{request.object_tag}' from the "
                                          f"'{request.app_name}' app: App not found")

    async def FunctionMap(self, stream):
        request = await stream.recv_message()
        call_id = self.new("fc")
        items = []
        for item in request.pipelined_inputs:
            self.inputs[call_id] = item.input
            items.append(api_pb2.FunctionPutInputsResponseItem(idx=item.idx, input_id=self.new("in")))
        await stream.send_message(api_pb2.FunctionMapResponse(function_call_id=call_id, pipelined_inputs=items))

    async def FunctionGetOutputs(self, stream):
        request = await stream.recv_message()
        outputs = self.outputs(request)
        if not outputs:
            await asyncio.sleep(min(request.timeout, 0.1))   # a long poll that saw nothing finish
        await stream.send_message(api_pb2.FunctionGetOutputsResponse(outputs=outputs, num_unfinished_inputs=1 - len(outputs)))


_server: tuple[ModalServer, str] | None = None


def shared_server() -> tuple[ModalServer, str]:
    """The process's server (started on first use, on a Unix socket) and its address for MODAL_SERVER_URL."""
    global _server
    if _server is None:
        servicer, path, ready = ModalServer(), str(Path(tempfile.mkdtemp()) / "modal.sock"), threading.Event()

        async def serve() -> None:
            server = grpclib.server.Server([servicer])
            await server.start(path=path)
            ready.set()
            await server.wait_closed()

        threading.Thread(target=asyncio.new_event_loop().run_until_complete, args=(serve(),), daemon=True).start()
        ready.wait(30)
        _server = servicer, f"unix://{path}"
    return _server


@pytest.fixture
def modal_server(monkeypatch):
    """The Modal client pointed at the in-process server (with a made-up token); the servicer."""
    from modal.client import _Client

    servicer, url = shared_server()
    monkeypatch.setenv("MODAL_SERVER_URL", url)
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    _Client.set_env_client(None)   # the client from the environment is made once per process: make it here
    servicer.outputs = lambda request: []
    yield servicer
    _Client.set_env_client(None)


# ---- what the client sent, in words a test can compare ---------------------------------------------
def started(app: Any) -> list[tuple[str, Any]]:
    """Start `app` as `modal run` / `modal deploy` would (every image, mount, function and class loaded by
    Modal's client, nothing called) and stop it; every request the client sent."""
    servicer, _ = shared_server()
    with servicer.intercept() as ctx, app.run():
        pass
    return ctx.calls


def env_of(image: api_pb2.Image) -> dict[str, str]:
    """The ENV lines of one image layer's Dockerfile commands (Modal writes one `ENV KEY=shell-quoted` each)."""
    import shlex

    pairs = [line[4:].partition("=") for line in image.dockerfile_commands if line.startswith("ENV ")]
    return {key: "".join(shlex.split(value)) for key, _, value in pairs}


def created_function(request: api_pb2.FunctionCreateRequest) -> api_pb2.Function:
    """The function a FunctionCreate defines: its one definition, or (a GPU fallback list) the first ranked one."""
    if request.HasField("function_data"):
        return request.function_data.ranked_functions[0].function
    return request.function


def gpu_string(gpu: api_pb2.GPUConfig) -> str | None:
    return (gpu.gpu_type + (f":{gpu.count}" if gpu.count > 1 else "")) or None


def functions(calls: list[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each created function (a class is its service function, `Train.*`) as the server received it; `gpus`:
    its GPU fallback list in rank order (one entry without one)."""
    created = {}
    for method, request in calls:
        if method != "FunctionCreate":
            continue
        f = created_function(request)
        ranked = sorted(request.function_data.ranked_functions, key=lambda r: r.rank) if request.HasField("function_data") else []
        created[f.function_name] = {
            "image": f.image_id, "gpu": gpu_string(f.resources.gpu_config),
            "gpus": [gpu_string(r.function.resources.gpu_config) for r in ranked] or [gpu_string(f.resources.gpu_config)],
            "timeout_s": f.timeout_secs, "retries": f.retry_policy.retries, "web": bool(f.webhook_config.type),
            "volumes": sorted(v.mount_path for v in f.volume_mounts), "secrets": len(f.secret_ids),
            "methods": sorted(f.method_definitions), "mounts": len(f.mount_ids),
            "nonpreemptible": f.scheduler_placement.nonpreemptible, "snapshot": f.checkpointing_enabled}
    return created


def mounted_files(calls: list[tuple[str, Any]]) -> set[str]:
    """Every file the client put in a mount, at its path in the container."""
    return {file.filename for method, request in calls if method == "MountGetOrCreate" for file in request.files}


def describe(module: str) -> None:
    """`python -c 'from fakes.modal_server import describe; describe("runner.serve")'`: import the module as
    `modal deploy -m` does (in a fresh interpreter, so its environment decides what it declares), start
    its app against this server, print its functions and each one's image environment as JSON."""
    import importlib
    import json
    import os

    _, url = shared_server()
    os.environ.update(MODAL_SERVER_URL=url, MODAL_TOKEN_ID="ak-test", MODAL_TOKEN_SECRET="as-test")
    app = importlib.import_module(module).app
    created = functions(started(app))
    servicer, _ = shared_server()
    for function in created.values():
        function["env"] = env_of(servicer.images[function.pop("image")])
    print(json.dumps({"app": app.name, "registered": sorted(app.registered_functions), "functions": created}))


def start_in_subprocess(module: str, **env: str) -> dict[str, Any]:
    """describe(module) in a fresh interpreter with `env` added (and none of this one's MODAL_* or RUNNER_*
    settings): what `modal deploy -m MODULE` would send, as JSON."""
    import json
    import os
    import subprocess
    import sys

    tests = Path(__file__).resolve().parents[1]
    code = f"import sys; sys.path.insert(0, {str(tests)!r}); from fakes.modal_server import describe; describe({module!r})"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_SERVE_", "RUNNER_MODAL_", "MODAL_"))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tests.parent,
                            env={**clean, **env}, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])
