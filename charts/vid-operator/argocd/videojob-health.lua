-- Argo CD health check for vidop.io/VideoJob. Install it under the key
-- resource.customizations.health.vidop.io_VideoJob of the argocd-cm ConfigMap
-- (see docs/gitops.md). Pending/Queued/Running -> Progressing, Succeeded ->
-- Healthy, Failed -> Degraded, Suspended -> Suspended. A Queued VideoJob says
-- why it waits (its Queued condition: its place in the operator's queue, or
-- the stage waiting for Kueue's quota).
local hs = {}
local function condition_message(status, kind)
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.type == kind and condition.status == "True" then
        return condition.message
      end
    end
  end
  return nil
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick the VideoJob up"
  return hs
end

local status = obj.status
local progress = status.progress or "0/0"
if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Video ready (" .. progress .. " stages)"
elseif status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = condition_message(status, "Failed") or "VideoJob failed"
elseif status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Suspended at " .. progress .. " stages"
elseif status.phase == "Queued" then
  hs.status = "Progressing"
  hs.message = condition_message(status, "Queued") or ("Queued at " .. progress .. " stages")
else
  hs.status = "Progressing"
  local waiting = condition_message(status, "Unschedulable")
  if waiting ~= nil then
    hs.message = waiting
  else
    hs.message = status.phase .. ": " .. progress .. " stages, running " .. (status.stage or "-")
  end
end
return hs
