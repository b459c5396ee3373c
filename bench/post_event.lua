-- wrk script: POST /v1/events with a distinct ~300-byte event per request
-- (a unique idempotency key, so nothing is a duplicate). The token comes
-- from BUREAU_TOKEN.
local token = os.getenv("BUREAU_TOKEN") or ""
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local n = 0

function request()
  n = n + 1
  local body = string.format(
    '{"type":"lead.created","source":"wrk","idempotency_key":"wrk-%d-%d",' ..
    '"data":{"email":"lead.%d.%d@example.com","name":"Lead %d","company":"Example GmbH",' ..
    '"message":"We would like a quote for the onboarding package for a team of five.",' ..
    '"channel":"website","n":%d}}', tid, n, tid, n, n, n)
  return wrk.format("POST", "/v1/events", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
