"""RAGFlow's stack: a Quart app, served by Hypercorn. Answers 200 on every path; /ws echoes."""

from quart import Quart, request, websocket

from recorder import METHODS, Recording, answer

app = Quart(__name__)
# Answer the path exactly as it came: no redirect to a merged or slash-terminated form.
app.url_map.merge_slashes = False
app.url_map.strict_slashes = False


@app.route("/", defaults={"path": ""}, methods=METHODS)
@app.route("/<path:path>", methods=METHODS)
async def anything(path):
    body = await request.get_data()
    return answer("hypercorn", request.path, len(body))


@app.websocket("/ws")
async def echo():
    while True:
        message = await websocket.receive()
        await websocket.send("echo:" + message)


app.asgi_app = Recording(app.asgi_app, "hypercorn")
