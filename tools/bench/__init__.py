"""Side-by-side HTTP/1.1 benchmark of prefork against uvicorn (h11) and hypercorn.

Each server runs as ONE process pinned to --server-cpu (taskset), started afresh for every
scenario; wrk is pinned to --load-cpu. Scenarios:
  keep-alive   wrk -t1 -c64 --latency over persistent connections (2 s warm-up first)
  close        the same with "Connection: close": one TCP connection per request
  idle-memory  N connections, one keep-alive request each, left idle: server RSS
               (children included) (after - before) / N
It measures, it doesn't judge: exit 0 unless a server fails to start (1) or wrk/taskset is
missing (2). Ratios are against uvicorn-h11. To extend, add a ServerDef to a table in
tools/bench/servers.py and/or a Scenario to tools/bench/suites.py. Run from the repository root:
python -m tools.bench [options] (or python tools/bench [options]).

--suite master: multi-process rows (issue 4, item 9), 2 workers per server: prefork (balanced
dispatch, and --dispatch round-robin), uvicorn --workers 2 (h11), gunicorn gthread and gunicorn's
asgi worker (a shared accept socket). The whole server runs on --mp-server-cpus (default 0,1:
both cores, so the two workers can run in parallel) and wrk on --load-cpu (1) with -t1, so wrk
shares core 1 with the server: the table shows the CPU both used. The apps (tools/peers/work.py)
answer hello, /burn (5 ms of CPU) and /pid, and count requests per process in mmapped files.
Scenarios:
  keep-alive   as above (-c64), plus the per-worker share of requests
  close        as above: the new-connection rate, which tests the master's hand-off
  skew         one connection per request, each /burn with probability 1/5 (tools/skew.lua),
               wrk -c--skew-connections (8); p99 against gunicorn-asgi-w2 and prefork-rr-w2
  skew-ka      the skewed load over keep-alive connections (not run unless named)
  spread       --connections keep-alive connections opened in one burst, each asks /pid:
               connections per worker, --spread-rounds times
Ratios: req/s against uvicorn-w2; skew p99 against gunicorn-asgi-w2 (below 1 is better).

--suite tls: HTTP/2 and HTTPS rows (issue 3, item 7), one process per server pinned to
--server-cpu, h2load -t1 / wrk -t1 on --load-cpu. One self-signed P-256 certificate and key are
made in a temporary directory at the start (deleted at the end) and given to every TLS server;
prefork runs tools/peers/prefork_serve.py (tls=False for h2c, tls=True with that certificate).
Scenarios (each against its own servers):
  h2c               h2load -n50000 -c16 -m10 http://  (prior knowledge): prefork-h2c vs
                    hypercorn-h2c
  h2-tls            the same over https:// (ALPN h2): prefork-tls, prefork-tls-fast (on
                    uvloop) and lua-http-tls vs hypercorn-tls
  https-keep-alive  wrk -t1 -c64 over https:// (HTTP/1.1): prefork-tls, prefork-tls-fast,
                    uvicorn-h11-tls, uvicorn-fast-tls (httptools, uvloop), hypercorn-tls,
                    lua-http-tls (its own self-signed RSA-2048 certificate); ratio to
                    uvicorn-h11-tls
  https-close       the same with "Connection: close" (a new TLS handshake per request),
                    without lua-http-tls
h2load's failed / errored / timed-out requests are counted as errors and its messages printed.
Goals: h2c and h2-tls >= 2x hypercorn, https-keep-alive >= 1.3x uvicorn-h11 (reported only).

--suite apps: application interfaces (issue 10, item 7), one worker per server: prefork
--workers 1 (master and worker pinned together on --server-cpu, as gunicorn's master and worker
are) running tools/peers/asgi_hello.py (--interface asgi) against uvicorn-h11 and hypercorn,
and the same response through the raw stream API (prefork-stream: the ASGI adapter's cost);
tools/peers/fastapi_hello.py on prefork and on uvicorn-h11; tools/peers/flask_hello.py on
prefork --interface wsgi --threads 4 and on gunicorn -k gthread -w 1 --threads 4. FastAPI and
Flask must be importable by prefork's python; they are installed in the peers venv at the same
versions when missing there. Scenarios keep-alive (-c64, with the server's CPU) and idle-memory.
Each row's ratio is against the peer running the same app (the `vs` column). Goals: ASGI
keep-alive >= 1.5x uvicorn-h11 and >= 2.5x hypercorn, FastAPI >= 1.2x uvicorn-h11, Flask >= 1.5x
gunicorn gthread, KiB per idle connection <= 0.5x uvicorn-h11 (reported only).

--suite peers: prefork against the servers people compare it with (issue 13, item 7), the same
hello everywhere: prefork --workers 1 (raw stream API) and prefork-pure (--loop asyncio --http
h11; skipped while prefork has no --loop), uvicorn-h11 (--http h11 --loop asyncio), uvicorn-fast
(--http httptools --loop uvloop), gunicorn-asgi (-k asgi, gunicorn's own worker), granian
(--interface asgi) and lua-http (Debian's, tools/hello.lua on Lua 5.2: the seed whose API prefork
follows; apt-get installs it when missing). All of a server's processes share --server-cpu.
Scenarios: keep-alive (-c64), close (-c--close-connections, 16), h2c (h2load, the servers that
speak it: prefork, gunicorn-asgi-h2c, granian, lua-http), keep-alive-w2 (the -w2 servers: two
workers on --mp-server-cpus), idle-memory (with each server's idle worker RSS). Ratios against
uvicorn-fast (h2c: lua-http; keep-alive-w2: uvicorn-fast-w2). Goals: keep-alive >= 1.2x
uvicorn-fast and >= 2x lua-http; close >= 1.0x uvicorn-fast, prefork-pure >= 1.3x uvicorn-h11;
keep-alive-w2 >= 1.0x uvicorn-fast-w2; h2c >= 0.75x lua-http; an idle worker <= 15 MiB, KiB per
idle connection <= 0.5x uvicorn-h11 (reported only). Not run unless named: prefork-asgi (the
ASGI hello on prefork), lua-http-jit (lua-http on LuaJIT).

--runs N runs a suite N times over and reports each row as the median of its runs. --chart DIR
draws each scenario as an SVG bar chart with matplotlib (pip install -e '.[bench]';
DIR/SUITE-SCENARIO.svg, prefork highlighted); --from-json FILE --chart DIR redraws them from a
saved --json FILE without running anything.
"""
