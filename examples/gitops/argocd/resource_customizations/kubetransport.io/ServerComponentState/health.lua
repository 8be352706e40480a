-- Argo CD health of the kube-transport kinds (TransportService, TransportConfig,
-- ServerComponentState), from their status conditions and observedGeneration:
--   Progressing  the operator has not yet reported on this generation of the spec
--   Degraded     Degraded=True (e.g. InvalidSpec naming the field, ServerPaused)
--   Suspended    Ready=False because the servers were stopped on purpose (ServerStopped)
--   Healthy      Ready=True for the current generation
--   Progressing  anything else (servers starting, draining, rolling)
local hs = { status = "Progressing", message = "Waiting for the operator to report a status" }
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local ready = nil
local degraded = nil
for _, condition in ipairs(obj.status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Degraded" then
    degraded = condition
  end
end
local function describe(condition)
  return condition.message or condition.reason or ""
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
if ready ~= nil then
  if ready.reason == "ServerStopped" then
    hs.status = "Suspended"
  end
  hs.message = describe(ready)
end
return hs
