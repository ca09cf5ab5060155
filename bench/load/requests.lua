-- wrk script for bench/load.py: cycles through a file of prepared requests and prints one
-- line of JSON at the end with the figures and the answers by status.
--
-- Environment (wrk passes none of its own, so bench/load.py sets these):
--   LOAD_REQUESTS  a file, one request a line: METHOD \t PATH \t BODY [\t NAME \t VALUE]...
--   LOAD_EXPECT    the statuses that count as a right answer, comma-separated ("200,302")
--   LOAD_DISTINCT  "1": thread N (from 0) reads LOAD_REQUESTS .. "." .. N instead, its own
--                  share, so two threads never send the same event; otherwise every thread
--                  cycles through the one file.
--   LOAD_MUST_CONTAIN  optional text every right answer's body must contain (for the
--                  sign-in: the wrong-password message, so a CSRF or limiter answer with the
--                  same status would still count as an error).

local threads = {}

function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

local function split(line)
   local fields = {}
   local start = 1
   while true do
      local tab = string.find(line, "\t", start, true)
      if tab == nil then
         table.insert(fields, string.sub(line, start))
         return fields
      end
      table.insert(fields, string.sub(line, start, tab - 1))
      start = tab + 1
   end
end

local prepared = {}
local position = 0
local expected = {}
local must_contain = nil
-- Globals, read back by done() through thread:get.
statuses = ""
counts = {}
wrong_body = 0

function init(args)
   local path = os.getenv("LOAD_REQUESTS")
   if os.getenv("LOAD_DISTINCT") == "1" then path = path .. "." .. thread_index end
   for line in io.lines(path) do
      if line ~= "" then
         local f = split(line)
         local headers = {}
         for i = 4, #f - 1, 2 do headers[f[i]] = f[i + 1] end
         local body = f[3] ~= "" and f[3] or nil
         table.insert(prepared, wrk.format(f[1], f[2], headers, body))
      end
   end
   if #prepared == 0 then error("no request in " .. path) end
   for code in string.gmatch(os.getenv("LOAD_EXPECT") or "200", "%d+") do
      expected[tonumber(code)] = true
   end
   must_contain = os.getenv("LOAD_MUST_CONTAIN")
   if must_contain == "" then must_contain = nil end
end

function request()
   position = position % #prepared + 1
   return prepared[position]
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
   if must_contain ~= nil and expected[status] and
         (body == nil or string.find(body, must_contain, 1, true) == nil) then
      wrong_body = wrong_body + 1
   end
end

function done(summary, latency, requests)
   local by_status = {}
   local bad_bodies = 0
   for _, thread in ipairs(threads) do
      for code, n in pairs(thread:get("counts")) do
         by_status[code] = (by_status[code] or 0) + n
      end
      bad_bodies = bad_bodies + thread:get("wrong_body")
   end
   local parts = {}
   for code, n in pairs(by_status) do
      table.insert(parts, string.format('"%d": %d', code, n))
   end
   local e = summary.errors
   io.write(string.format(
      'LOAD_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}, ' ..
      '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}, ' ..
      '"statuses": {%s}, "wrong_body": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean, table.concat(parts, ", "), bad_bodies))
end
