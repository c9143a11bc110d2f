"""Test app: a minimal Django project with its settings in code, nothing prefork-specific
(tests/test_wsgi_frameworks.py). ``app`` is Django's own ``get_wsgi_application()``.

``/hello/`` (and ``/``) is a plain view; ``/form/`` a form POST (urlencoded or multipart,
with a file larger than FILE_UPLOAD_MAX_MEMORY_SIZE, so Django spools it to a temporary file);
``/stream/`` a ``StreamingHttpResponse`` that holds its second part until ``STREAM_GATE`` is set;
``/file/`` a ``FileResponse`` (``wsgi.file_wrapper``).
"""

from __future__ import annotations

import hashlib
import os
import threading

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="prefork-tests-only",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
        FILE_UPLOAD_MAX_MEMORY_SIZE=64 * 1024,
        LOGGING_CONFIG=None,
    )
    django.setup()

# Django's modules below want the settings configured first
from django import forms
from django.core.wsgi import get_wsgi_application
from django.http import (
    FileResponse,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path

STREAM_GATE = threading.Event()
FILE = os.environ.get("WSGI_TEST_FILE", "")


class UploadForm(forms.Form):
    field = forms.CharField()
    file = forms.FileField(required=False)


def hello(request):
    return HttpResponse(f"hello {request.GET.get('name', 'django')} {request.method}\n")


def form(request):
    if request.method != "POST":
        return HttpResponse("POST a form\n", status=405)
    bound = UploadForm(request.POST, request.FILES)
    if not bound.is_valid():
        return HttpResponseBadRequest(bound.errors.as_json())
    out = {"field": bound.cleaned_data["field"]}
    upload = bound.cleaned_data["file"]
    if upload is not None:
        digest = hashlib.sha256()
        for piece in upload.chunks():
            digest.update(piece)
        out.update(name=upload.name, size=upload.size, sha256=digest.hexdigest())
        out["spooled"] = hasattr(upload, "temporary_file_path")
    return JsonResponse(out)


def stream(request):
    def parts():
        yield b"first\n"
        if not STREAM_GATE.wait(10):
            raise TimeoutError("the test did not read the first part")
        yield b"second\n"

    return StreamingHttpResponse(parts(), content_type="text/plain")


def file(request):
    return FileResponse(open(request.GET.get("path", FILE), "rb"))


urlpatterns = [
    path("", hello),
    path("hello/", hello),
    path("form/", form),
    path("stream/", stream),
    path("file/", file),
]

app = get_wsgi_application()
