# prefork in a container: a slim Python base, a non-root user, prefork as the entrypoint.
#   docker build -t prefork .
#   docker run --rm -p 8080:8080 prefork                      # the bundled example app
#   docker run --rm -p 8080:8080 -v "$PWD:/srv" -w /srv prefork --bind 0.0.0.0:8080 myapp:app
# The master runs as PID 1: it handles SIGTERM itself (docker stop: drain for --drain-time,
# then a graceful stop) and reaps its own workers. tools/docker_smoke builds and checks this.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin prefork

WORKDIR /opt/prefork
COPY pyproject.toml README.md LICENSE ./
COPY prefork ./prefork
RUN pip install ".[fast]"
COPY examples ./examples

USER prefork
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
ENTRYPOINT ["prefork"]
CMD ["--bind", "0.0.0.0:8080", "--health-path", "/healthz", "examples/hello.py:reply"]
