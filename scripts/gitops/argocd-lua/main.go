// argocd-lua-check runs the project's Argo CD resource customizations through Argo CD's
// own code: the argocd-cm patch is read by Argo CD's settings manager (as the
// application controller and API server read argocd-cm), health checks run through
// util/lua's ResourceHealthOverrides.GetResourceHealth (what the controller calls for
// every resource), and actions through lua.VM's discovery and action calls (what the API
// server calls). It prints what Argo CD computed, one JSON object per line; it compares
// nothing (tests/gitops.rs does).
//
// Usage: argocd-lua-check ARGOCD_CM_PATCH_YAML CUSTOMIZATIONS_DIR
//
// CUSTOMIZATIONS_DIR is laid out like Argo CD's resource_customizations:
// <group>/<Kind>/health_test.yaml and <group>/<Kind>/actions/action_test.yaml, each with
// inputPath (and action) entries relative to their own directory.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"
)

const namespace = "argocd"

type healthTests struct {
	Tests []struct {
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

type actionTests struct {
	DiscoveryTests []struct {
		InputPath string `json:"inputPath"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action    string `json:"action"`
		InputPath string `json:"inputPath"`
	} `json:"actionTests"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "error: "+format+"\n", args...)
	os.Exit(1)
}

// readYAML reads a file into `into`, ignoring fields it does not name (the expectations
// of a test file are for the caller).
func readYAML(path string, into any) {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		fail("%s: %v", path, err)
	}
}

func readObject(path string) *unstructured.Unstructured {
	obj := &unstructured.Unstructured{}
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	if err := yaml.Unmarshal(data, &obj.Object); err != nil {
		fail("%s: %v", path, err)
	}
	return obj
}

func emit(line map[string]any) {
	out, err := json.Marshal(line)
	if err != nil {
		fail("%v", err)
	}
	fmt.Println(string(out))
}

func errText(err error) any {
	if err == nil {
		return nil
	}
	return err.Error()
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: argocd-lua-check ARGOCD_CM_PATCH_YAML CUSTOMIZATIONS_DIR")
	}
	// The patch as the argocd-cm ConfigMap of a fresh installation.
	cm := &corev1.ConfigMap{}
	readYAML(os.Args[1], cm)
	cm.Name = "argocd-cm"
	cm.Namespace = namespace
	cm.Labels = map[string]string{"app.kubernetes.io/part-of": "argocd"}
	secret := &corev1.Secret{}
	secret.Name = "argocd-secret"
	secret.Namespace = namespace
	secret.Labels = map[string]string{"app.kubernetes.io/part-of": "argocd"}
	clientset := fake.NewClientset(cm, secret)
	mgr := settings.NewSettingsManager(context.Background(), clientset, namespace)
	overrides, err := mgr.GetResourceOverrides()
	if err != nil {
		fail("argocd-cm: %v", err)
	}
	vm := lua.VM{ResourceOverrides: overrides}

	dir := os.Args[2]
	healthFiles, _ := filepath.Glob(filepath.Join(dir, "*", "*", "health_test.yaml"))
	actionFiles, _ := filepath.Glob(filepath.Join(dir, "*", "*", "actions", "action_test.yaml"))
	if len(healthFiles) == 0 {
		fail("no <group>/<Kind>/health_test.yaml under %s", dir)
	}
	sort.Strings(healthFiles)
	sort.Strings(actionFiles)
	for _, file := range healthFiles {
		base := filepath.Dir(file)
		kind := filepath.Base(base)
		var tests healthTests
		readYAML(file, &tests)
		for _, t := range tests.Tests {
			obj := readObject(filepath.Join(base, t.InputPath))
			hs, err := lua.ResourceHealthOverrides(overrides).GetResourceHealth(obj)
			line := map[string]any{"test": "health", "kind": kind, "inputPath": t.InputPath, "error": errText(err)}
			if hs == nil && err == nil {
				line["error"] = "Argo CD has no health check for " + obj.GroupVersionKind().String()
			}
			if hs != nil {
				line["status"] = string(hs.Status)
				line["message"] = hs.Message
			}
			emit(line)
		}
	}
	for _, file := range actionFiles {
		base := filepath.Dir(file)
		kind := filepath.Base(filepath.Dir(base))
		var tests actionTests
		readYAML(file, &tests)
		for _, t := range tests.DiscoveryTests {
			obj := readObject(filepath.Join(base, t.InputPath))
			line := map[string]any{"test": "discovery", "kind": kind, "inputPath": t.InputPath}
			scripts, err := vm.GetResourceActionDiscovery(obj)
			if err == nil {
				var actions any
				actions, err = vm.ExecuteResourceActionDiscovery(obj, scripts)
				line["actions"] = actions
			}
			line["error"] = errText(err)
			emit(line)
		}
		for _, t := range tests.ActionTests {
			obj := readObject(filepath.Join(base, t.InputPath))
			line := map[string]any{"test": "action", "kind": kind, "action": t.Action, "inputPath": t.InputPath}
			action, err := vm.GetResourceAction(obj, t.Action)
			if err == nil {
				var impacted []lua.ImpactedResource
				impacted, err = vm.ExecuteResourceAction(obj, action.ActionLua)
				results := []map[string]any{}
				for _, r := range impacted {
					results = append(results, map[string]any{"operation": string(r.K8SOperation), "resource": r.UnstructuredObj.Object})
				}
				line["impacted"] = results
			}
			line["error"] = errText(err)
			emit(line)
		}
	}
}
