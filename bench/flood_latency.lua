-- wrk script for bench/flood_latency.py: sends the prepared bodies of one file in order
-- (thread N reads FILE.N), one "PATH<TAB>BODY" per line, and reports latency percentiles
-- and how many answers were not what the file's first line expects (a marker string).
local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

function init(args)
   paths, bodies = {}, {}
   local file = assert(io.open(args[1] .. "." .. id, "r"))
   expect = file:read("*l")
   for line in file:lines() do
      local tab = line:find("\t", 1, true)
      table.insert(paths, line:sub(1, tab - 1))
      table.insert(bodies, line:sub(tab + 1))
   end
   file:close()
   n, i, unexpected, wrapped = #bodies, 0, 0, 0
end

function request()
   i = i + 1
   if i > n then
      i, wrapped = 1, wrapped + 1
   end
   return wrk.format("POST", paths[i], {["Content-Type"] = "application/json"}, bodies[i])
end

function response(status, headers, body)
   if expect ~= "" and (status ~= 200 or not body:find(expect, 1, true)) then
      unexpected = unexpected + 1
   end
end

function done(summary, latency, requests)
   local bad, wraps = 0, 0
   for _, thread in ipairs(threads) do
      bad = bad + thread:get("unexpected")
      wraps = wraps + thread:get("wrapped")
   end
   io.write(string.format(
      "RESULT requests=%d p50_us=%d p99_us=%d unexpected=%d wrapped=%d errors=%d\n",
      summary.requests, latency:percentile(50), latency:percentile(99), bad, wraps,
      summary.errors.connect + summary.errors.read + summary.errors.write
         + summary.errors.status + summary.errors.timeout))
end
