-- Argo CD resource actions for artifacts.aosm.dev ArtifactTransfer: "reconcile" (run the
-- transfer again now). Disabled while spec.suspend is true: the controller ignores a
-- suspended transfer, so the request would do nothing.
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true
actions["reconcile"] = {["disabled"] = suspended}
return actions
