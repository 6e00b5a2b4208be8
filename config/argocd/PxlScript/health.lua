-- PxlScript health: the rules after the shared prelude in ../conditions.lua (see there).
-- The operator's only verdict on a script is whether it compiles; a False Compiled condition
-- carries the compiler's line:col: message.
if is("Compiled", "False") then
  hs.status = "Degraded"
  hs.message = describe(condition("Compiled"))
elseif is("Compiled", "True") then
  hs.status = "Healthy"
  hs.message = describe(condition("Compiled"))
else
  hs.status = "Progressing"
  hs.message = "waiting for the Compiled condition"
end
return hs
