"""The HTTP ceiling of this machine: a bare Starlette app that reads the request's body and answers a fixed JSON
body, under the same uvicorn workers as the peers. No service here can be faster; the benchmark reports each
target's share of it.

    uvicorn loadtests.peers.ceiling:app --workers 2 --port 3300
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = b'{"student_id":"s-1","skill":"leadership","score":0.5,"model_version":"v1.0.0"}'


async def answer(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


app = Starlette(routes=[Route("/readyz", ready), Route("/{path:path}", answer, methods=["POST"])])
