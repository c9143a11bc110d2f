"""--interface auto: the stream API, ASGI 3 and WSGI told apart by the callable's signature."""

from __future__ import annotations

import functools

import pytest

from prefork.apps.detect import InterfaceError, detect


async def onstream(server, stream):
    pass


async def asgi(scope, receive, send):
    pass


def wsgi(environ, start_response):
    pass


class AsgiApp:
    async def __call__(self, scope, receive, send):
        pass


class WsgiApp:
    def __call__(self, environ, start_response):
        pass


class Methods:
    async def asgi(self, scope, receive, send):
        pass

    def wsgi(self, environ, start_response):
        pass


@pytest.mark.parametrize(
    ("app", "interface"),
    [
        (onstream, "stream"),
        (asgi, "asgi"),
        (wsgi, "wsgi"),
        (AsgiApp(), "asgi"),
        (WsgiApp(), "wsgi"),
        (Methods().asgi, "asgi"),
        (Methods().wsgi, "wsgi"),
        (functools.partial(asgi), "asgi"),
    ],
)
def test_detect(app, interface: str) -> None:
    assert detect(app) == interface


async def three_and_more(a, b, c, d):
    pass


def varargs(*args):
    pass


@pytest.mark.parametrize(
    ("app", "words"),
    [
        (three_and_more, "--interface"),
        (varargs, "--interface"),
        (AsgiApp, "ASGI 2"),  # a class: ASGI 2, or a factory
        (42, "not callable"),
        (lambda scope: None, "--interface"),
        (lambda server, stream: None, "not async"),  # the stream API without async
    ],
)
def test_what_cannot_be_told_names_the_option(app, words: str) -> None:
    with pytest.raises(InterfaceError, match=words):
        detect(app)
