-- A renewal note (workflow renewal-draft): the retainer or subscription
-- ending soon, a suggestion drawn from what the customer said before (the
-- context pack's sources, cited) and a question. Sees `event`
-- (renewal.due: {contact, name, email, kind, ends_at, cancels, plan, fact})
-- and `args` ({signature?}); returns {subject, text, citations}.
local d = event and event.data or {}
local name = d.name or ""
local first = string.match(name, "^(%S+)") or "there"
if first == "" then first = "there" end
local me = args.signature or "Best regards"
local day = string.sub(d.ends_at or "", 1, 10)
local fact = d.fact or {}
local what
if d.kind == "retainer" then
  what = "our retainer"
  if fact.hours then what = what .. " (" .. tostring(fact.hours) .. " hours a month)" end
else
  what = "your " .. (d.plan and (tostring(d.plan) .. " ") or "") .. "subscription"
end
local lines = { "Hi " .. first .. ",", "" }
if d.cancels then
  lines[#lines + 1] = "I noticed " .. what .. " is set to end on " .. day .. ". Before it does, may I ask what would make it worth keeping?"
else
  lines[#lines + 1] = "A quick note: " .. what .. " comes up for renewal on " .. day .. "."
end
-- the suggestion: from their own words when memory has them
local citations = {}
local basis
for i, s in ipairs(sources or {}) do
  if s.snippet and #s.snippet > 0 and not basis then
    basis = { n = i, seq = s.seq, snippet = s.snippet }
  end
end
lines[#lines + 1] = ""
if basis then
  citations[1] = basis
  lines[#lines + 1] = "Looking back, you mentioned: \"" .. basis.snippet .. "\" [" .. basis.n .. "]"
end
if d.kind == "retainer" then
  lines[#lines + 1] = "For the next term I would suggest a few more hours a month set aside for that, at the current rate, so it does not compete with the running work."
else
  lines[#lines + 1] = "If you plan to stay, the yearly plan would save you two months' fees compared to paying monthly."
end
lines[#lines + 1] = ""
lines[#lines + 1] = "Shall I prepare the renewal that way, or would you rather keep things as they are?"
lines[#lines + 1] = ""
lines[#lines + 1] = me
return { subject = "Your renewal on " .. day, text = table.concat(lines, "\n"), citations = citations }
