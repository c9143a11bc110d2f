-- lua-http's hello server, the seed whose http.server API prefork follows, for tools/bench
-- --suite peers: lua-http's examples/server_hello.lua without its log line per request, and
-- with the answer every other peer gives (200 text/plain "Hello world!\n" with a
-- content-length; the example sends no length, so lua-http would chunk the body).
--
--   lua5.2 tools/hello.lua HOST PORT [reuseport] [tls]
--
-- Plaintext by default (tls = false), any HTTP version: lua-http sniffs the HTTP/2 preface, so
-- the one port serves HTTP/1.1 and h2c prior knowledge, as prefork's does. "tls" serves TLS only
-- (tls = true, no ctx: lua-http makes its own self-signed RSA-2048 certificate and offers h2
-- and http/1.1 by ALPN; the bench's --suite tls). "reuseport" sets SO_REUSEPORT, so that two
-- copies share the port (the bench's two-worker row). The idle timeout is lifted to 300 s, as
-- for every peer, so the idle-memory connections stay open.
local http_server = require "http.server"
local http_headers = require "http.headers"

local host, port = assert(arg[1], "HOST"), assert(tonumber(arg[2]), "PORT")
local flags = {}
for i = 3, #arg do
	flags[arg[i]] = true
end
local body = "Hello world!\n"

-- A client that leaves mid-answer is not an error here (lua-http's example asserts, so its
-- onerror would print a line for each one at the end of every wrk run).
local function reply(_, stream)
	local req_headers = stream:get_headers()
	if not req_headers then
		return
	end
	local method = req_headers:get ":method"
	local res_headers = http_headers.new()
	res_headers:append(":status", "200")
	res_headers:append("content-type", "text/plain")
	res_headers:append("content-length", tostring(#body))
	if stream:write_headers(res_headers, method == "HEAD") and method ~= "HEAD" then
		stream:write_chunk(body, true)
	end
end

local server = assert(http_server.listen {
	host = host;
	port = port;
	reuseaddr = true;
	reuseport = flags.reuseport or false;
	tls = flags.tls or false;
	intra_stream_timeout = 300;
	onstream = reply;
	onerror = function(_, context, op, err)
		io.stderr:write(op, " on ", tostring(context), " failed: ", tostring(err), "\n")
	end;
})
assert(server:listen())
assert(server:loop())
