package kubernetes

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/ociimage"
	"github.com/gdprgate/gdprgate/internal/yamlfile"
)

type doc = map[string]any

func loadDocs(t *testing.T) []doc {
	t.Helper()
	data, err := os.ReadFile("gdprgate-crm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	parts, err := yamlfile.Documents(data)
	if err != nil {
		t.Fatal(err)
	}
	var docs []doc
	for i, part := range parts {
		var d doc
		if err := json.Unmarshal(part, &d); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if d["apiVersion"] == nil || d["kind"] == nil || get(d, "metadata", "name") == nil {
			t.Fatalf("document %d lacks apiVersion, kind or metadata.name", i)
		}
		docs = append(docs, d)
	}
	return docs
}

// get walks nested maps; nil when a step is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func list(v any) []any { l, _ := v.([]any); return l }

func find(docs []doc, kind, name string) doc {
	for _, d := range docs {
		if d["kind"] == kind && get(d, "metadata", "name") == name {
			return d
		}
	}
	return nil
}

func TestManifestHasTheExpectedObjects(t *testing.T) {
	docs := loadDocs(t)
	for _, want := range []struct{ kind, name string }{
		{"ConfigMap", "envoy-bootstrap"},
		{"Deployment", "crm"},
		{"Service", "crm"},
		{"Deployment", "redis"},
		{"Service", "redis"},
		{"PersistentVolumeClaim", "redis-data"},
	} {
		if find(docs, want.kind, want.name) == nil {
			t.Errorf("missing %s %s", want.kind, want.name)
		}
	}
	var names []string
	for _, c := range list(get(find(docs, "Deployment", "crm"), "spec", "template", "spec", "containers")) {
		names = append(names, fmt.Sprint(get(c, "name")))
	}
	if strings.Join(names, ",") != "crm,envoy,gdprgate" {
		t.Errorf("crm pod containers = %v, want crm,envoy,gdprgate", names)
	}
}

// A probe or a service naming a port no container declares never succeeds.
func TestProbesAndServicesNameExistingPorts(t *testing.T) {
	docs := loadDocs(t)
	podPorts := map[string]map[string]bool{} // deployment -> port names and numbers
	for _, d := range docs {
		if d["kind"] != "Deployment" {
			continue
		}
		dep := fmt.Sprint(get(d, "metadata", "name"))
		podPorts[dep] = map[string]bool{}
		spec := get(d, "spec", "template", "spec")
		if sel, lab := get(d, "spec", "selector", "matchLabels"), get(d, "spec", "template", "metadata", "labels"); !subset(sel, lab) {
			t.Errorf("deployment %s: selector %v does not match pod labels %v", dep, sel, lab)
		}
		volumes := map[string]bool{}
		for _, v := range list(get(spec, "volumes")) {
			volumes[fmt.Sprint(get(v, "name"))] = true
			if claim := get(v, "persistentVolumeClaim", "claimName"); claim != nil && find(docs, "PersistentVolumeClaim", fmt.Sprint(claim)) == nil {
				t.Errorf("deployment %s: PVC %v not defined", dep, claim)
			}
		}
		for _, c := range list(get(spec, "containers")) {
			cname := fmt.Sprint(get(c, "name"))
			ports := map[string]bool{}
			for _, p := range list(get(c, "ports")) {
				ports[fmt.Sprint(get(p, "name"))] = true
				ports[fmt.Sprint(get(p, "containerPort"))] = true
			}
			for k := range ports {
				podPorts[dep][k] = true
			}
			for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
				pr := get(c, probe)
				if pr == nil {
					continue
				}
				for _, handler := range []string{"httpGet", "tcpSocket", "grpc"} {
					if port := get(pr, handler, "port"); port != nil && !ports[fmt.Sprint(port)] {
						t.Errorf("%s/%s %s: port %v is not a port of the container", dep, cname, probe, port)
					}
				}
			}
			for _, m := range list(get(c, "volumeMounts")) {
				if !volumes[fmt.Sprint(get(m, "name"))] {
					t.Errorf("%s/%s mounts undefined volume %v", dep, cname, get(m, "name"))
				}
			}
		}
	}
	for _, d := range docs {
		if d["kind"] != "Service" {
			continue
		}
		svc := get(d, "metadata", "name")
		var target string
		for dep, ports := range podPorts {
			if subset(get(d, "spec", "selector"), get(find(docs, "Deployment", dep), "spec", "template", "metadata", "labels")) {
				target = dep
				for _, p := range list(get(d, "spec", "ports")) {
					if !ports[fmt.Sprint(get(p, "targetPort"))] {
						t.Errorf("service %v: targetPort %v not declared by deployment %s", svc, get(p, "targetPort"), dep)
					}
				}
			}
		}
		if target == "" {
			t.Errorf("service %v selects no deployment", svc)
		}
	}
}

func subset(sel, labels any) bool {
	s, _ := sel.(map[string]any)
	l, _ := labels.(map[string]any)
	if len(s) == 0 {
		return false
	}
	for k, v := range s {
		if l[k] != v {
			return false
		}
	}
	return true
}

func TestGdprgateSidecarAndRedisAreConfiguredAsDesigned(t *testing.T) {
	docs := loadDocs(t)
	var gate map[string]any
	for _, c := range list(get(find(docs, "Deployment", "crm"), "spec", "template", "spec", "containers")) {
		if get(c, "name") == "gdprgate" {
			gate = c.(map[string]any)
		}
	}
	args := fmt.Sprint(get(gate, "args"))
	for _, want := range []string{"serve", "--redis-url redis://redis:6379", "--config /etc/gdprgate/gdprgate.yaml"} {
		if !strings.Contains(args, want) {
			t.Errorf("gdprgate args %s lack %q", args, want)
		}
	}
	if get(gate, "livenessProbe", "httpGet", "path") != "/healthz" || get(gate, "readinessProbe", "httpGet", "path") != "/readyz" {
		t.Errorf("gdprgate probes must use the admin /healthz and /readyz")
	}
	var redisArgs []string
	for _, a := range list(get(list(get(find(docs, "Deployment", "redis"), "spec", "template", "spec", "containers"))[0], "args")) {
		redisArgs = append(redisArgs, fmt.Sprint(a))
	}
	if i := slices.Index(redisArgs, "--appendonly"); i < 0 || i+1 >= len(redisArgs) || redisArgs[i+1] != "yes" {
		t.Errorf("redis args %v must turn AOF on (--appendonly yes)", redisArgs)
	}
}

// The ConfigMap carries the tested bootstrap, not a drifting copy.
func TestEnvoyBootstrapMatchesExample(t *testing.T) {
	want, err := os.ReadFile("../envoy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := get(find(loadDocs(t), "ConfigMap", "envoy-bootstrap"), "data", "envoy.yaml")
	if got != string(want) {
		t.Error("ConfigMap envoy-bootstrap's envoy.yaml differs from examples/envoy/envoy.yaml; copy it over (indented by 4 spaces)")
	}
}

// TestImagesAreTheOnesMakeImageBuilds keeps the manifest's gdprgate and CRM
// images the names `make image` writes (cmd/gdprgate-image).
func TestImagesAreTheOnesMakeImageBuilds(t *testing.T) {
	want := map[string]string{
		"gdprgate": ociimage.Gdprgate.Repository + ":" + ociimage.DefaultTag,
		"crm":      ociimage.ExampleCRM.Repository + ":" + ociimage.DefaultTag,
	}
	seen := map[string]bool{}
	for _, d := range loadDocs(t) {
		for _, c := range list(get(d, "spec", "template", "spec", "containers")) {
			name := fmt.Sprint(get(c, "name"))
			if w, ok := want[name]; ok {
				seen[name] = true
				if img := get(c, "image"); img != w {
					t.Errorf("container %s runs %v, make image builds %s", name, img, w)
				}
			}
		}
	}
	if len(seen) != len(want) {
		t.Errorf("containers found: %v, want %v", seen, want)
	}
}
