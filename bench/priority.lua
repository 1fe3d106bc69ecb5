-- wrk script for bench/priority.py: a flood of free calls (no client id) from many client
-- addresses. wrk cannot bind source addresses, so each request carries an X-Forwarded-For
-- address (the gateway runs with --trusted-proxy 127.0.0.1): thread N walks its own slice
-- of HOSTS addresses 10.a.b.c. Counts answers by what they say: served, refused for payment,
-- shed ("BUSY"), other.
local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

function init(args)
   path, body, hosts = args[1], args[2], tonumber(args[3])
   k = id * 104729
   served, refused, shed, other = 0, 0, 0, 0
   headers = {["Content-Type"] = "application/json"}
end

function request()
   k = k + 1
   local h = k % hosts
   headers["X-Forwarded-For"] = string.format(
      "10.%d.%d.%d", math.floor(h / 65536) % 256, math.floor(h / 256) % 256, h % 256)
   return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, text)
   if status ~= 200 then
      other = other + 1
   elseif text:find("PAYMENT REQUIRED", 1, true) or text:find("does not verify", 1, true) then
      refused = refused + 1
   elseif text:find("BUSY", 1, true) then
      shed = shed + 1
   else
      served = served + 1
   end
end

function done(summary, latency, requests)
   local s, r, b, o = 0, 0, 0, 0
   for _, thread in ipairs(threads) do
      s = s + thread:get("served")
      r = r + thread:get("refused")
      b = b + thread:get("shed")
      o = o + thread:get("other")
   end
   io.write(string.format(
      "RESULT requests=%d served=%d refused=%d shed=%d other=%d errors=%d duration_us=%d\n",
      summary.requests, s, r, b, o,
      summary.errors.connect + summary.errors.read + summary.errors.write
         + summary.errors.timeout, summary.duration))
end
