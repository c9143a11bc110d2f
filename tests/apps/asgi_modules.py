"""Test app (ASGI): HTTP gets tests/apps/modules.py's JSON (the pid and the optional libraries
loaded); a WebSocket is accepted, sent the same JSON as a text message, and closed."""

import json
import os

from tests.apps.modules import loaded


async def app(scope, receive, send):
    report = json.dumps({"pid": os.getpid(), "loaded": loaded()})
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": report.encode()})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(loaded())})
        await send({"type": "websocket.close", "code": 1000})
