-- A reply to a support request (workflow support-reply): acknowledges the
-- problem, cites what memory holds on it (the customer's history and
-- similar past answers, numbered as in `sources`) and says what happens
-- next. Sees `event` (support.requested: {email, name, message, subject}),
-- `args` ({name, topic, message, signature?}) and `sources`; returns
-- {subject, text, citations}.
local d = event and event.data or {}
local name = args.name or d.name or ""
local first = string.match(name, "^(%S+)") or "there"
if first == "" then first = "there" end
local topic = args.topic or d.subject or "your request"
if topic == "" then topic = "your request" end
local me = args.signature or "Best regards"
local lines = { "Hi " .. first .. ",", "",
  "Thanks for letting me know about " .. topic .. ". I am on it." }
local citations = {}
for i, s in ipairs(sources or {}) do
  if s.snippet and #s.snippet > 0 and #citations < 4 then
    citations[#citations + 1] = { n = i, seq = s.seq, snippet = s.snippet }
  end
end
if #citations > 0 then
  lines[#lines + 1] = ""
  lines[#lines + 1] = "What I found that looks related:"
  for _, c in ipairs(citations) do
    lines[#lines + 1] = "- \"" .. c.snippet .. "\" [" .. c.n .. "]"
  end
end
lines[#lines + 1] = ""
lines[#lines + 1] = "I will confirm the cause and come back to you with a fix or a workaround today."
lines[#lines + 1] = ""
lines[#lines + 1] = me
local subject = "Re: " .. topic
if string.match(topic, "^[Rr][Ee]:") then subject = topic end
return { subject = subject, text = table.concat(lines, "\n"), citations = citations }
