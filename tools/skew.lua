-- wrk script for tools/bench's skewed load: each request is GET /burn (the apps burn 5 ms of
-- CPU for it) with probability 1/5, else GET /. Pseudo-random with a fixed seed, so every server
-- gets the same sequence: a fixed cycle (4 x "/", then "/burn") would be unfair the other way, as
-- round-robin over 2 workers would then alternate the burns between them perfectly (5 is odd).
-- -H headers given on the command line (e.g. Connection: close) are kept by wrk.format.
local burn, hello

init = function(args)
  math.randomseed(20240611)
  burn = wrk.format(nil, "/burn")
  hello = wrk.format(nil, "/")
end

request = function()
  if math.random(5) == 1 then
    return burn
  end
  return hello
end
