-- Shared prelude of every px.dev health check. Argo CD runs each check alone, with the object in
-- `obj`, and reads hs.status and hs.message; so `make argocd` puts this prelude in front of each
-- <Kind>/health.lua in argocd-cm-patch.yaml, and the tests run exactly those embedded scripts.
local hs = {}

local function condition(type_)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is(type_, status)
  local c = condition(type_)
  return c ~= nil and c.status == status
end

-- "Reason: message", or whichever of the two is set.
local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

-- A status that describes an older spec (or no status at all) says nothing about this one.
local function stale()
  local generation = obj.metadata and obj.metadata.generation
  local status = obj.status
  if status == nil or status.observedGeneration == nil or (generation ~= nil and status.observedGeneration < generation) then
    hs.status = "Progressing"
    if generation ~= nil then
      hs.message = string.format("waiting for the operator to observe generation %d", generation)
    else
      hs.message = "waiting for the operator to report status"
    end
    return true
  end
  return false
end

if stale() then
  return hs
end
