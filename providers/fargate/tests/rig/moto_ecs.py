"""The Fargate provider's AWS stand-in: moto in server mode, in-process,
with a control route and the patches that make its ECS behave as ECS
documents where the provider depends on it.

Usage: python moto_ecs.py  (prints "listening on 127.0.0.1:PORT faults
127.0.0.1:PROXY", then serves until stdin closes or the process is killed).

PROXY is a fault-injecting reverse proxy in front of moto: it forwards each
call to PORT, except a chosen share (`/_vk/faults` on PORT, none at first)
that it answers itself, never reaching moto: 400
`{"__type":"ThrottlingException","message":"Rate exceeded"}` with
`X-Amzn-Errortype: ThrottlingException` (what ECS answers when throttling),
or 500 `{"__type":"ServerException"}`. The provider under test talks to
PROXY; the test checks the backend on PORT.

Patches of moto 5.2.x, each one where moto falls short of ECS's documented
behaviour (this list is their record):

- A task shows one container per container definition (moto builds one,
  from the first definition), named and imaged as defined, RUNNING with no
  exit code while the task runs (moto: always PENDING with exit code 0).
- A task has `startedAt` (moto: no timestamps).
- Tasks stay RUNNING until stopped (moto's state manager set to manual).
- StopTask stops the task's running containers with exit code 143
  (SIGTERM), as ECS reports a stopped container; moto leaves them PENDING.
- RunTask honours `clientToken`: a second call with the same token (and
  cluster) answers the tasks of the first instead of running more, as ECS
  documents; moto ignores the token.

Control route (POST, JSON body), on the same port as the AWS APIs:

- /_vk/container {"task": ARN or id, "container": name,
  "lastStatus": "STOPPED", "exitCode": 1, "reason": "..."}: a container's state;
- /_vk/task {"task": ARN or id, "lastStatus": "STOPPED", "stopCode": "...",
  "stoppedReason": "..."}: a task's state (STOPPED also sets desiredStatus
  and stoppedAt);
- GET /_vk/network?region=R: the default VPC's first subnet and default
  security group, {"subnet": "...", "securityGroup": "..."};
- /_vk/faults {"share": 0.2, "throttled": 0.5}: the share of the calls
  through the proxy that fail, and the share of those that are throttled
  (the others are 500); the counts so far come back;
- /_vk/latency {"RunTask": 0.5, ...}: later calls of these actions (the
  `X-Amz-Target` operation) are answered one at a time, each that many
  seconds late (0 ends it), so a test can kill the provider while its
  calls are in flight, however many it makes at once;
- GET /_vk/calls: the calls so far by API name (`ecs.RunTask`,
  `logs.GetLogEvents`, ...), and `ecs.DescribeTasks:tasks`, the tasks all
  DescribeTasks calls asked about (what `cargo xtask bench` reports).
"""

import datetime
import http.client
import io
import json
import random
import sys
import threading
import time

from moto.ec2.models import ec2_backends
from moto.moto_api import state_manager
from moto.ecs import models as ecs_models
from moto.ecs.models import ecs_backends
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

ACCOUNT = "123456789012"

# Seconds of latency by action, set by /_vk/latency.
_latency = {}
_latency_lock = threading.Lock()

# Calls by API name (`ecs.RunTask`), read by /_vk/calls.
_calls = {}
_calls_lock = threading.Lock()

# The proxy's faults, set by /_vk/faults, and what it did.
_faults = {"share": 0.0, "throttled": 0.5}
_fault_counts = {"forwarded": 0, "throttled": 0, "failed": 0}
_fault_lock = threading.Lock()


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


# ---- Patches -------------------------------------------------------------

_original_task_init = ecs_models.Task.__init__


def _task_init(self, cluster, task_definition, *args, **kwargs):
    _original_task_init(self, cluster, task_definition, *args, **kwargs)
    containers = []
    for definition in task_definition.container_definitions:
        c = ecs_models.Container(task_definition)
        c.name = definition.get("name")
        c.image = definition.get("image")
        c.cpu = definition.get("cpu", 0)
        c.memory = definition.get("memory")
        c.environment = definition.get("environment")
        c.command = definition.get("command")
        c.last_status = "RUNNING"
        c.exitCode = None
        c.reason = None
        containers.append(c)
    self.containers = containers
    self.started_at = _now()
    self.stop_code = None


ecs_models.Task.__init__ = _task_init

_original_stop_task = ecs_models.EC2ContainerServiceBackend.stop_task


def _stop_task(self, cluster_str, task_str, reason):
    task = _original_stop_task(self, cluster_str, task_str, reason)
    for c in task.containers:
        if c.last_status != "STOPPED":
            c.last_status = "STOPPED"
            c.exitCode = 143
    task.stop_code = task.stop_code or "UserInitiated"
    task.stopped_at = _now()
    return task


ecs_models.EC2ContainerServiceBackend.stop_task = _stop_task

_original_run_task = EC2ContainerServiceResponse.run_task
_run_tokens = {}
_run_lock = threading.Lock()


def _run_task(self):
    token = self._get_param("clientToken")
    if not token:
        return _original_run_task(self)
    key = (self.current_account, self.region, self._get_param("cluster", "default"), token)
    with _run_lock:
        if key not in _run_tokens:
            _run_tokens[key] = _original_run_task(self)
        return _run_tokens[key]


EC2ContainerServiceResponse.run_task = _run_task


# ---- Control route ---------------------------------------------------------


def _find_task(ident):
    for region in ecs_backends[ACCOUNT].keys():
        backend = ecs_backends[ACCOUNT][region]
        for tasks in backend.tasks.values():
            for arn, task in tasks.items():
                if arn == ident or arn.endswith("/" + ident):
                    return task
    raise KeyError(f"no task {ident}")


def _control(request):
    try:
        if request.path == "/_vk/network":
            region = request.args.get("region", "us-east-1")
            ec2 = ec2_backends[ACCOUNT][region]
            vpc = next(v for v in ec2.vpcs.values() if v.is_default)
            subnet = sorted(
                (s for s in ec2.describe_subnets() if s.vpc_id == vpc.id),
                key=lambda s: s.id,
            )[0]
            group = next(
                g
                for g in ec2.describe_security_groups()
                if g.vpc_id == vpc.id and g.name == "default"
            )
            body = {"subnet": subnet.id, "securityGroup": group.id}
        elif request.path == "/_vk/container":
            args = request.get_json(force=True)
            task = _find_task(args["task"])
            c = next(c for c in task.containers if c.name == args["container"])
            if "lastStatus" in args:
                c.last_status = args["lastStatus"]
            if "exitCode" in args:
                c.exitCode = args["exitCode"]
            if "reason" in args:
                c.reason = args["reason"]
            body = {"ok": True}
        elif request.path == "/_vk/task":
            args = request.get_json(force=True)
            task = _find_task(args["task"])
            if "lastStatus" in args:
                task.last_status = args["lastStatus"]
                if args["lastStatus"] == "STOPPED":
                    task.desired_status = "STOPPED"
                    task.stopped_at = _now()
            if "stopCode" in args:
                task.stop_code = args["stopCode"]
            if "stoppedReason" in args:
                task.stopped_reason = args["stoppedReason"]
            body = {"ok": True}
        elif request.path == "/_vk/faults":
            args = request.get_json(force=True)
            with _fault_lock:
                for k in ("share", "throttled"):
                    if k in args:
                        _faults[k] = float(args[k])
                body = dict(_fault_counts)
        elif request.path == "/_vk/calls":
            # Calls by API name since the start (through either port).
            with _calls_lock:
                body = dict(_calls)
        elif request.path == "/_vk/latency":
            for action, seconds in request.get_json(force=True).items():
                if seconds:
                    _latency[action] = float(seconds)
                else:
                    _latency.pop(action, None)
            body = {"ok": True}
        else:
            return Response("no such control route\n", status=404)
    except (KeyError, StopIteration, IndexError) as e:
        return Response(json.dumps({"error": str(e)}), status=404)
    return Response(json.dumps(body), content_type="application/json")


def _api_name(target):
    """`ecs.RunTask` for `AmazonEC2ContainerServiceV20141113.RunTask`,
    `logs.GetLogEvents`, `secretsmanager.CreateSecret`."""
    prefix, _, action = target.rpartition(".")
    if "ContainerService" in prefix:
        service = "ecs"
    elif prefix.startswith("Logs"):
        service = "logs"
    else:
        service = prefix.lower()
    return f"{service}.{action}"


def _count_call(environ, target):
    """Counts one call by API name (what `cargo xtask bench` reports); for
    DescribeTasks also how many tasks it asked about."""
    name = _api_name(target)
    described = 0
    if name == "ecs.DescribeTasks":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            described = len(json.loads(body or b"{}").get("tasks", []))
        except ValueError:
            described = 0
    with _calls_lock:
        _calls[name] = _calls.get(name, 0) + 1
        _calls["ecs.DescribeTasks:tasks"] = _calls.get("ecs.DescribeTasks:tasks", 0) + described


class _WithControl:
    """The moto application, with /_vk/* answered by the control route."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/_vk/"):
            return _control(Request(environ))(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        action = target.rsplit(".", 1)[-1]
        if target:
            _count_call(environ, target)
        if action in _latency:
            with _latency_lock:
                time.sleep(_latency.get(action, 0))
        return self.app(environ, start_response)


class Server(ThreadedMotoServer):
    def _server_entry(self):
        app = _WithControl(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address,
            self._port,
            app,
            True,
            request_handler=MotoRequestHandler,
        )
        self._server_ready_event.set()
        self._server.serve_forever()


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class _FaultProxy:
    """Forwards each call to moto on `port`, or fails it (see the module doc)."""

    def __init__(self, port):
        self.port = port

    def _fail(self, start_response):
        with _fault_lock:
            share, throttled = _faults["share"], _faults["throttled"]
            if random.random() >= share:
                _fault_counts["forwarded"] += 1
                return None
            throttle = random.random() < throttled
            _fault_counts["throttled" if throttle else "failed"] += 1
        if throttle:
            status, kind, message = "400 Bad Request", "ThrottlingException", "Rate exceeded"
        else:
            status, kind, message = "500 Internal Server Error", "ServerException", "injected"
        body = json.dumps({"__type": kind, "message": message}).encode()
        start_response(
            status,
            [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amzn-Errortype", kind),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    def __call__(self, environ, start_response):
        failed = self._fail(start_response)
        if failed is not None:
            return failed
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        headers = {
            k[5:].replace("_", "-").title(): v
            for k, v in environ.items()
            if k.startswith("HTTP_") and k[5:].replace("_", "-").lower() not in _HOP_BY_HOP
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        headers["Host"] = environ.get("HTTP_HOST", f"127.0.0.1:{self.port}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            out = [
                (k, v)
                for k, v in answer.getheaders()
                if k.lower() not in _HOP_BY_HOP
            ]
            out.append(("Content-Length", str(len(data))))
            start_response(f"{answer.status} {answer.reason}", out)
            return [data]
        finally:
            conn.close()


def main():
    # Tasks stay where they are until StopTask or the control route moves
    # them (moto otherwise advances a task one state per DescribeTasks, from
    # RUNNING down to STOPPED). A reset keeps this.
    state_manager.set_transition(
        model_name="ecs::task",
        transition={"progression": "manual", "times": 10**9},
    )
    server = Server(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxy = make_server("127.0.0.1", 0, _FaultProxy(port), threaded=True)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    print(f"listening on {host}:{port} faults 127.0.0.1:{proxy.server_port}", flush=True)
    # Serve until the test process goes away (stdin closes) or kills us.
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
