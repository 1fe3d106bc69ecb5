-- wrk script for bench/_wrk.py: thread N sends the prepared lines of FILE.N in order, one
-- "PATH<TAB>BODY" per line (the file's first line is a Lua pattern an OK answer contains).
-- Run with one connection per thread, so a thread's bodies reach the server in file order.
-- Counts OK and not-OK answers, and whether a thread ran out of bodies and wrapped (a
-- wrapped body is a replay, which a paying server must refuse: the run must say so).
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
   n, i, sent, ok, not_ok, wrapped, sample = #bodies, 0, 0, 0, 0, 0, ""
   headers = {["Content-Type"] = "application/json"}
end

function request()
   i, sent = i + 1, sent + 1
   if i > n then
      i, wrapped = 1, 1
   end
   return wrk.format("POST", paths[i], headers, bodies[i])
end

function response(status, _, body)
   if status == 200 and body:find(expect) then
      ok = ok + 1
   else
      not_ok = not_ok + 1
      if sample == "" then
         sample = status .. " " .. body:sub(1, 300):gsub("%s+", " ")
      end
   end
end

function done(summary, latency, _)
   local good, bad, wraps, most, first = 0, 0, 0, 0, ""
   for _, thread in ipairs(threads) do
      good = good + thread:get("ok")
      bad = bad + thread:get("not_ok")
      wraps = wraps + thread:get("wrapped")
      most = math.max(most, thread:get("sent"))
      if first == "" then
         first = thread:get("sample")
      end
   end
   local e = summary.errors
   io.write(string.format(
      "RESULT duration_us=%d ok=%d not_ok=%d errors=%d wrapped=%d max_sent=%d p50_us=%d p99_us=%d\n",
      summary.duration, good, bad, e.connect + e.read + e.write + e.timeout, wraps, most,
      latency:percentile(50), latency:percentile(99)))
   if first ~= "" then
      io.write("SAMPLE " .. first .. "\n")
   end
end
