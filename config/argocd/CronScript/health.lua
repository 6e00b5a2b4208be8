-- CronScript health: the rules after the shared prelude in ../conditions.lua (see there).
local failures = obj.status.consecutiveFailures or 0
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "suspended: no new runs start"
elseif is("Degraded", "True") then
  hs.status = "Degraded"
  hs.message = describe(condition("Degraded"))
elseif is("Ready", "False") then
  hs.status = "Degraded"
  hs.message = describe(condition("Ready"))
elseif failures > 0 then
  -- Any failure since the last success: the exported data has a gap a user should see.
  hs.status = "Degraded"
  hs.message = string.format("%d consecutive failed runs", failures)
  local last = obj.status.lastRun
  if last ~= nil and last.error ~= nil and last.error ~= "" then
    hs.message = hs.message .. "; last: " .. last.error
  end
else
  hs.status = "Healthy"
  local ready = condition("Ready")
  if ready ~= nil then
    hs.message = describe(ready)
  else
    hs.message = "scheduled"
  end
end
return hs
