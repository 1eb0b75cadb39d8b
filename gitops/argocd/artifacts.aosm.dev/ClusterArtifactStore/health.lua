-- Argo CD health check for artifacts.aosm.dev ArtifactTransfer, ArtifactStore and
-- ClusterArtifactStore (the same script for the three kinds; register it under
-- resource.customizations.health.artifacts.aosm.dev_<Kind> in argocd-cm, see
-- docs/gitops.md).
--
-- It reads the kstatus conditions the controller writes, in this order:
--   spec.suspend is true                          -> Suspended
--   no conditions yet                             -> Progressing (not seen by the controller yet)
--   status.observedGeneration is not the
--   object's metadata.generation                  -> Progressing (a spec change not acted on yet)
--   Stalled is True                               -> Degraded (needs a change; the reason says which)
--   Reconciling is True                           -> Progressing (Progressing or ProgressingWithRetry)
--   Ready is True for the current generation      -> Healthy
--   Ready is False                                -> Degraded
--   anything else                                 -> Progressing
-- The message is "<reason>: <message>" of the condition that decided.
--
-- Argo CD runs scripts from argocd-cm in gopher-lua (Lua 5.1) with only the base, table
-- and a safe os library: no string or math library, so neither is used here.

local hs = {}

local function find_condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(c)
  local reason = c.reason
  local message = c.message
  if reason == nil or reason == "" then
    reason = c.type .. " is " .. tostring(c.status)
  end
  if message == nil or message == "" then
    return reason
  end
  return reason .. ": " .. message
end

local spec = obj.spec
if spec ~= nil and spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: the controller does nothing until it is set back to false"
  return hs
end

local status = obj.status
local conditions = nil
if status ~= nil then
  conditions = status.conditions
end
if conditions == nil or #conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to report a status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to act on generation " .. tostring(generation)
    .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local stalled = find_condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local reconciling = find_condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local ready = find_condition(conditions, "Ready")
if ready ~= nil then
  if ready.status == "True" then
    if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration ~= generation then
      hs.status = "Progressing"
      hs.message = "Waiting for the controller to act on generation " .. tostring(generation)
        .. " (Ready is for generation " .. tostring(ready.observedGeneration) .. ")"
      return hs
    end
    hs.status = "Healthy"
    hs.message = describe(ready)
    return hs
  end
  if ready.status == "False" then
    hs.status = "Degraded"
    hs.message = describe(ready)
    return hs
  end
  hs.status = "Progressing"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
