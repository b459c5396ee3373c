-- An outline for a piece from an idea (workflow content-pipeline). Sees
-- `event` (content.idea: {title?, idea, audience?}); returns {subject,
-- text, citations}: the working title and the outline, one heading a line.
-- A remote model on the draft route rewrites it; the local tier keeps this
-- skeleton for you to fill in.
local d = event and event.data or {}
local idea = d.idea or d.message or d.text or ""
local title = d.title
if not title or title == "" then
  title = string.match(idea, "^[^%.%?!\n]+") or "Untitled"
  if #title > 80 then title = string.sub(title, 1, 80) end
end
local audience = d.audience or "clients like ours"
local lines = {
  "Working title: " .. title,
  "For: " .. audience,
  "",
  "1. The problem, in the reader's words",
  "2. Why the usual fix falls short",
  "3. What we do instead (with one example from our work)",
  "4. How to start tomorrow: three steps",
  "5. Call to action",
}
return { subject = title, text = table.concat(lines, "\n"), citations = {} }
