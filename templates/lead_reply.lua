-- The first reply to a new lead (workflow lead-intake): thanks them, says
-- back what they asked for, outlines a proposal and asks for a call. It
-- sees `event` (lead.captured: {email, name, message, subject?}), `steps`,
-- `args` ({name, message, topic, signature?}) and `sources` (the context
-- pack's [{seq, snippet}]); it returns {subject, text, citations}. A remote
-- model on the draft route rewrites it; the local tier sends it as it is.
local d = event and event.data or {}
local name = args.name or d.name or ""
local first = string.match(name, "^(%S+)") or "there"
if first == "" then first = "there" end
local topic = args.topic or d.subject or "your project"
if topic == "" then topic = "your project" end
local message = args.message or d.message or ""
local me = args.signature or "Best regards"

local lines = { "Hi " .. first .. ",", "",
  "Thank you for reaching out about " .. topic .. "." }
if #message > 0 then
  local gist = string.sub(message, 1, 280)
  if #message > 280 then gist = gist .. "…" end
  lines[#lines + 1] = "If I understood you right, you are looking for: \"" .. gist .. "\""
end
local citations = {}
for i, s in ipairs(sources or {}) do
  if s.snippet and #s.snippet > 0 and #citations < 3 then
    citations[#citations + 1] = { n = i, seq = s.seq, snippet = s.snippet }
    lines[#lines + 1] = "From what we discussed before: \"" .. s.snippet .. "\" [" .. i .. "]"
  end
end
lines[#lines + 1] = ""
lines[#lines + 1] = "Here is how I would approach it:"
lines[#lines + 1] = "1. Discovery: a 30-minute call to pin down goals, constraints and what success looks like."
lines[#lines + 1] = "2. Proposal: a written scope with milestones, a timeline and a fixed price, within three working days."
lines[#lines + 1] = "3. Delivery: weekly check-ins and a demo at every milestone."
lines[#lines + 1] = ""
lines[#lines + 1] = "Would a call this week or next suit you? Reply with a couple of times that work."
lines[#lines + 1] = ""
lines[#lines + 1] = me
local subject = "Re: " .. topic
if string.match(topic, "^[Rr][Ee]:") then subject = topic end
return { subject = subject, text = table.concat(lines, "\n"), citations = citations }
