"""Test app: answers with what ``stream.checktls()`` is: ``"<module>.<class> <alpn>"`` (``none``
for a plaintext connection or no ALPN)."""

import ssl

from prefork.headers import Headers


async def onstream(server, stream):
    await stream.get_headers()
    conn = stream.checktls()
    if conn is None:
        kind, alpn = "none", None
    else:
        kind = f"{type(conn).__module__}.{type(conn).__qualname__}"
        if isinstance(conn, ssl.SSLObject):
            alpn = conn.selected_alpn_protocol()
        else:
            alpn = (conn.get_alpn_proto_negotiated() or b"").decode() or None
    body = f"{kind} {alpn or 'none'}\n".encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)
