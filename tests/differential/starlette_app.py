"""RAG Modulo's stack: a Starlette app, served by uvicorn. Answers 200 on every path; /ws echoes."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from recorder import METHODS, Recording, answer


async def anything(request):
    body = await request.body()
    return JSONResponse(answer("uvicorn", request.url.path, len(body)))


async def echo(ws):
    await ws.accept()
    while True:
        message = await ws.receive_text()
        await ws.send_text("echo:" + message)


app = Recording(
    Starlette(routes=[WebSocketRoute("/ws", echo), Route("/{path:path}", anything, methods=METHODS)]),
    "uvicorn",
)
