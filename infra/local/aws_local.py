"""The two AWS endpoints of an instance's scale-in that moto does not serve, run locally.

- Each replica's instance metadata (IMDSv2): a session token, the instance id and the Auto
  Scaling target lifecycle state, which the autoscaler turns to `Terminated` to start the
  replica's drain (the gateway's lifecycle watcher reads it, as on an instance).
- Auto Scaling's `CompleteLifecycleAction` (the Query API boto3 speaks): the gateway calls
  it once drained; the call is checked against the group, the hook and an instance waiting
  in `Terminating:Wait`, as EC2 Auto Scaling checks it, and recorded for the autoscaler.

Both are loopback-only stdlib HTTP servers in threads of the autoscaler's process.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

LIFECYCLE_PATH = "/latest/meta-data/autoscaling/target-lifecycle-state"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
TOKEN_PATH = "/latest/api/token"
AUTOSCALING_XMLNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _LoopbackServer:
    """A stdlib HTTP server on an ephemeral loopback port, served from a daemon thread."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class InstanceMetadataServer(_LoopbackServer):
    """One replica's IMDSv2 on 127.0.0.1, in a thread."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.lifecycle_state = "InService"
        token = secrets.token_urlsafe(16)
        outer = self

        class Handler(_Quiet):
            def do_PUT(self) -> None:
                if self.path != TOKEN_PATH:
                    return self._send(404, "")
                if "x-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                    return self._send(400, "")
                return self._send(200, token)

            def do_GET(self) -> None:
                if self.headers.get("x-aws-ec2-metadata-token") != token:
                    return self._send(401, "")
                if self.path == INSTANCE_ID_PATH:
                    return self._send(200, outer.instance_id)
                if self.path == LIFECYCLE_PATH:
                    return self._send(200, outer.lifecycle_state)
                return self._send(404, "")

        self._serve(Handler)


class LifecycleEndpoint(_LoopbackServer):
    """EC2 Auto Scaling's CompleteLifecycleAction for one group and one termination hook."""

    def __init__(self, group: str, hook: str, on_complete: Callable[[str], bool]) -> None:
        """`on_complete(instance_id)` is True if that instance was in Terminating:Wait."""
        self.group = group
        self.hook = hook

        class Handler(_Quiet):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                action = form.get("Action")
                if action != "CompleteLifecycleAction":
                    return self._error(400, "InvalidAction", f"{action} is not served locally")
                if form.get("AutoScalingGroupName") != group:
                    return self._error(400, "ValidationError", "No such Auto Scaling group")
                if form.get("LifecycleHookName") != hook:
                    return self._error(400, "ValidationError", "No such lifecycle hook")
                instance_id = form.get("InstanceId", "")
                if not on_complete(instance_id):
                    message = f"No active Lifecycle Action found with instance ID {instance_id}"
                    return self._error(400, "ValidationError", message)
                body = (
                    f'<CompleteLifecycleActionResponse xmlns="{AUTOSCALING_XMLNS}">'
                    "<CompleteLifecycleActionResult/>"
                    f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                    "</CompleteLifecycleActionResponse>"
                )
                return self._send(200, body, "text/xml")

            def _error(self, status: int, code: str, message: str) -> None:
                body = (
                    f'<ErrorResponse xmlns="{AUTOSCALING_XMLNS}"><Error><Type>Sender</Type>'
                    f"<Code>{code}</Code><Message>{message}</Message></Error>"
                    f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
                )
                self._send(status, body, "text/xml")

        self._serve(Handler)
