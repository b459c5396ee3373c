-- A gentle follow-up when a lead did not answer the first reply (workflow
-- lead-intake). Sees `event` (lead.captured), `args` ({name, topic,
-- days, signature?}); returns {subject, text, citations}.
local d = event and event.data or {}
local name = args.name or d.name or ""
local first = string.match(name, "^(%S+)") or "there"
if first == "" then first = "there" end
local topic = args.topic or d.subject or "your project"
if topic == "" then topic = "your project" end
local me = args.signature or "Best regards"
local text = table.concat({
  "Hi " .. first .. ",", "",
  "Following up on my note about " .. topic .. " from " .. tostring(args.days or "a few") .. " days ago.",
  "If the timing is not right, no problem at all; if it is, I would be glad to set up a short call.", "",
  me }, "\n")
local subject = "Re: " .. topic
if string.match(topic, "^[Rr][Ee]:") then subject = topic end
return { subject = subject, text = text, citations = {} }
