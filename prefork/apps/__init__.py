"""Application interfaces as adapters on the stream contract: ASGI, WSGI, interface detection."""
