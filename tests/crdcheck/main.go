// crdcheck validates the CRDs, the examples and the invalid fixtures with the Kubernetes
// API server's own code (k8s.io/apiextensions-apiserver), without running a server:
// ValidateCustomResourceDefinition (structural schema, CEL compilation and cost), then for
// each object the steps of the custom-resource strategy: pruning (reported as unknown
// fields, like strict field validation), defaulting, OpenAPI validation, list-type
// validation and CEL rules.
//
//	crdcheck CRD_DIR [OBJECT_DIR...]
//
// A directory whose path contains "invalid" holds objects that must be refused with
// messages containing each of their "# expect: ..." lines; the others must be accepted.
// Exits 1 on any problem. `make crdcheck` builds and runs it.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

type kind struct {
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

func main() {
	ctx := context.Background()
	kinds := map[string]*kind{}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: crdcheck CRD_DIR [OBJECT_DIR...]")
		os.Exit(2)
	}
	crdFiles, _ := filepath.Glob(os.Args[1] + "/*.yaml")
	bad := 0
	for _, f := range crdFiles {
		data, _ := os.ReadFile(f)
		var v1 apiextv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &v1); err != nil {
			fmt.Println(f, "strict decode:", err)
			bad++
		}
		apiextv1.SetObjectDefaults_CustomResourceDefinition(&v1)
		var in apiextensions.CustomResourceDefinition
		if err := apiextv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1, &in, nil); err != nil {
			panic(err)
		}
		if errs := crdvalidation.ValidateCustomResourceDefinition(ctx, &in); len(errs) > 0 {
			fmt.Println(f, "CRD REFUSED:")
			for _, e := range errs {
				fmt.Println("  ", e)
			}
			bad++
		} else {
			fmt.Println(f, "CRD ok")
		}
		var schema *apiextensions.JSONSchemaProps
		if in.Spec.Validation != nil {
			schema = in.Spec.Validation.OpenAPIV3Schema
		} else {
			schema = in.Spec.Versions[0].Schema.OpenAPIV3Schema
		}
		s, err := structuralschema.NewStructural(schema)
		if err != nil {
			panic(err)
		}
		sv, _, err := apiservervalidation.NewSchemaValidator(schema)
		if err != nil {
			panic(err)
		}
		kinds[in.Spec.Names.Kind] = &kind{s, sv, cel.NewValidator(s, true, celconfig.PerCallLimit)}
	}
	check := func(f string, data []byte) string {
		var obj map[string]interface{}
		if err := yaml.Unmarshal(data, &obj); err != nil {
			return "decode: " + err.Error()
		}
		k := kinds[obj["kind"].(string)]
		if k == nil {
			return ""
		}
		var msgs []string
		unknown := pruning.PruneWithOptions(obj, k.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
		for _, u := range unknown {
			msgs = append(msgs, fmt.Sprintf("unknown field %q", u))
		}
		structuraldefaulting.Default(obj, k.structural)
		errs := apiservervalidation.ValidateCustomResource(nil, obj, k.validator)
		errs = append(errs, listtype.ValidateListSetsAndMaps(nil, k.structural, obj)...)
		blocking := false
		for _, e := range errs {
			if e.Type == field.ErrorTypeNotSupported || e.Type == field.ErrorTypeTypeInvalid {
				blocking = true
			}
		}
		if !blocking {
			celErrs, _ := k.cel.Validate(ctx, nil, k.structural, obj, nil, celconfig.RuntimeCELCostBudget)
			errs = append(errs, celErrs...)
		}
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		return strings.Join(msgs, "\n")
	}
	for _, dir := range os.Args[2:] {
		files, _ := filepath.Glob(dir + "/*.yaml")
		for _, f := range files {
			data, _ := os.ReadFile(f)
			invalid := strings.Contains(dir, "invalid")
			for _, doc := range strings.Split(string(data), "\n---\n") {
				msg := check(f, []byte(doc))
				if !invalid {
					if msg != "" {
						fmt.Printf("EXAMPLE REFUSED %s:\n  %s\n", f, msg)
						bad++
					}
					continue
				}
				var missing []string
				for _, line := range strings.Split(doc, "\n") {
					if e, ok := strings.CutPrefix(line, "# expect: "); ok && !strings.Contains(msg, e) {
						missing = append(missing, e)
					}
				}
				status := "ok"
				if msg == "" || len(missing) > 0 {
					status = fmt.Sprintf("MISMATCH (missing %q)", missing)
					bad++
				}
				fmt.Printf("%s %s\n  %s\n", status, filepath.Base(f), strings.ReplaceAll(msg, "\n", "\n  "))
			}
		}
	}
	fmt.Println("problems:", bad)
	if bad > 0 {
		os.Exit(1)
	}
}
