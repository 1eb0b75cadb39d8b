-- Argo CD resource action "reconcile" for artifacts.aosm.dev ArtifactTransfer: sets the
-- annotation artifacts.aosm.dev/requested-at to the current UTC time. The controller runs
-- the transfer again for any value it has not handled yet (status.lastHandledReconcileAt),
-- like `kubectl annotate --overwrite artifacttransfer/NAME
-- artifacts.aosm.dev/requested-at="$(date -u +%FT%TZ)"`.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["artifacts.aosm.dev/requested-at"] = os.date("!%Y-%m-%dT%XZ")
return obj
