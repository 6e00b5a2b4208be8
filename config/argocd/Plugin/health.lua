-- Plugin health: the rules after the shared prelude in ../conditions.lua (see there).
if is("Degraded", "True") then
  hs.status = "Degraded"
  hs.message = describe(condition("Degraded"))
elseif is("Ready", "True") then
  hs.status = "Healthy"
  hs.message = describe(condition("Ready"))
elseif is("Ready", "False") then
  hs.status = "Degraded"
  hs.message = describe(condition("Ready"))
else
  hs.status = "Progressing"
  hs.message = "waiting for the Ready condition"
end
return hs
