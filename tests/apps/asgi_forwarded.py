"""Test app: FastAPI reporting the client and the URL it sees (forwarded headers)."""

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/")
async def root():
    return {"hello": "forwarded"}


@app.get("/where")
async def where(request: Request):
    return {"client": request.client.host, "url": str(request.url)}
