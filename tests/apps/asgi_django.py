"""Test app: the same Django project as tests/apps/wsgi_django.py, served through Django's
own ``get_asgi_application()``."""

from django.core.asgi import get_asgi_application

import tests.apps.wsgi_django  # noqa: F401 - configures the settings and the URLs

app = get_asgi_application()
