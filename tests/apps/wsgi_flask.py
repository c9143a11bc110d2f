"""Test app: a plain Flask application, nothing prefork-specific (tests/test_wsgi_frameworks.py).

``/json`` echoes a JSON body; ``/stream`` streams with ``stream_with_context`` and holds its
second line until ``STREAM_GATE`` is set (when the test has read the first); ``/upload`` hashes
the request stream as it arrives; ``/form`` takes a multipart form; ``/file`` is ``send_file``
(``wsgi.file_wrapper``); ``/boom`` raises; ``/whoami`` (and ``/``) tells the process and thread.
"""

from __future__ import annotations

import hashlib
import os
import threading

from flask import Flask, Response, jsonify, request, send_file, stream_with_context

app = Flask(__name__)
STREAM_GATE = threading.Event()
FILE = os.environ.get("WSGI_TEST_FILE", "")


@app.post("/json")
def json_echo():
    return jsonify(got=request.get_json(), args=request.args, path=request.path)


@app.get("/stream")
def stream():
    def generate():
        yield f"hello {request.args.get('name', 'world')}\n"  # the request context lives on
        if not STREAM_GATE.wait(10):
            raise TimeoutError("the test did not read the first line")
        yield f"bye {request.args.get('name', 'world')}\n"

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.post("/upload")
def upload():
    digest = hashlib.sha256()
    size = 0
    while data := request.stream.read(65536):
        digest.update(data)
        size += len(data)
    return jsonify(
        size=size, sha256=digest.hexdigest(), te=request.headers.get("Transfer-Encoding")
    )


@app.post("/form")
def form():
    upload = request.files["file"]
    data = upload.read()
    return jsonify(
        field=request.form["field"],
        filename=upload.filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


@app.get("/file")
def file():
    return send_file(request.args.get("path", FILE), mimetype="application/octet-stream")


@app.get("/boom")
def boom():
    raise RuntimeError("boom")


@app.get("/")
@app.get("/whoami")
def whoami():
    return jsonify(pid=os.getpid(), thread=threading.current_thread().name)
