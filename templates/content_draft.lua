-- A first draft from an outline (workflow content-pipeline). Sees `event`
-- (content.idea) and `args` ({outline, title}); returns {subject, text,
-- citations}: the outline's headings, each with the idea's own words to
-- start from, for you (or a remote model on the draft route) to write out.
local d = event and event.data or {}
local idea = d.idea or d.message or d.text or ""
local title = args.title or "Untitled"
local lines = { "# " .. title, "" }
for line in string.gmatch(args.outline or "", "[^\n]+") do
  local heading = string.match(line, "^%d+%.%s+(.+)$")
  if heading then
    lines[#lines + 1] = "## " .. heading
    lines[#lines + 1] = ""
  end
end
lines[#lines + 1] = "---"
lines[#lines + 1] = "The idea, as it came: " .. idea
return { subject = title, text = table.concat(lines, "\n"), citations = {} }
