-- The generic reply template of model.draft (DATA/templates/reply.lua
-- overrides it). It sees `event` (the task's trigger), `steps`, `task`,
-- `args` (the step's with.args) and `sources` (with.sources: a list of
-- {seq|item, snippet}), and returns the draft: {subject, text, citations}.
-- Citations are kept as [n] marks in the text, numbered as in `sources`.
local d = event and event.data or {}
local from = d.from or {}
local name = args.name or from.name or (d.fields and d.fields.name) or "there"
local first = string.match(name, "^(%S+)") or name
local topic = args.topic or d.subject or (d.fields and d.fields.subject) or "your message"
local me = args.signature or "Best regards"

local lines = {}
lines[#lines + 1] = "Hi " .. first .. ","
lines[#lines + 1] = ""
lines[#lines + 1] = "Thank you for getting in touch about " .. topic .. "."
local citations = {}
for i, s in ipairs(sources or {}) do
  if s.snippet and #s.snippet > 0 then
    lines[#lines + 1] = "You mentioned: \"" .. s.snippet .. "\" [" .. i .. "]"
    citations[#citations + 1] = { n = i, seq = s.seq, item = s.item, snippet = s.snippet }
  end
end
if args.body then
  lines[#lines + 1] = ""
  lines[#lines + 1] = args.body
else
  lines[#lines + 1] = "I will look into it and come back to you shortly."
end
lines[#lines + 1] = ""
lines[#lines + 1] = me

local subject = topic
if d.subject and not string.match(d.subject, "^[Rr][Ee]:") then
  subject = "Re: " .. d.subject
end
return { subject = subject, text = table.concat(lines, "\n"), citations = citations }
