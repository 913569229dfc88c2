"""A fake of the EC2 instance metadata service (IMDSv2), as an ASGI app for httpx.

Serves a session token, the instance id and the Auto Scaling lifecycle state, which a test
changes (`FakeImds.lifecycle_state = "Terminated"`). Requests without a valid token get 401,
as the real service answers when IMDSv2 is required.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

TOKEN = "fake-imds-token"


class FakeImds:
    def __init__(self, instance_id: str = "i-0123456789abcdef0") -> None:
        self.instance_id = instance_id
        self.lifecycle_state = "InService"
        self.fail = False
        self.reads = 0
        self.app = Starlette(
            routes=[
                Route("/latest/api/token", self._token, methods=["PUT"]),
                Route("/latest/meta-data/instance-id", self._instance_id, methods=["GET"]),
                Route(
                    "/latest/meta-data/autoscaling/target-lifecycle-state",
                    self._lifecycle,
                    methods=["GET"],
                ),
            ]
        )

    async def _token(self, request: Request) -> Response:
        if "x-aws-ec2-metadata-token-ttl-seconds" not in request.headers:
            return Response(status_code=400)
        return PlainTextResponse(TOKEN)

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("x-aws-ec2-metadata-token") == TOKEN

    async def _instance_id(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response(status_code=401)
        return PlainTextResponse(self.instance_id)

    async def _lifecycle(self, request: Request) -> Response:
        self.reads += 1
        if self.fail:
            return Response(status_code=500)
        if not self._authorized(request):
            return Response(status_code=401)
        return PlainTextResponse(self.lifecycle_state)
