package helm

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/gdprgate/gdprgate/examples/envoy/bootstrapcheck"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/ociimage"
)

var decoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	// Strict: an unknown or repeated field is an error, as for kubectl apply
	// with server-side field validation.
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load("gdprgate")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// objects is one rendering, decoded.
type objects struct {
	all        []runtime.Object
	deployment *appsv1.Deployment
	services   []*corev1.Service
	configMaps map[string]*corev1.ConfigMap
	pdb        *policyv1.PodDisruptionBudget
	netpol     *networkingv1.NetworkPolicy
	notes      string
}

func render(c *chart.Chart, values map[string]any) (*objects, error) {
	rv, err := chartutil.ToRenderValues(c, values, chartutil.ReleaseOptions{Name: "shop", Namespace: "crm", IsInstall: true, Revision: 1}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(c, rv)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	o := &objects{configMaps: map[string]*corev1.ConfigMap{}}
	for _, n := range names {
		if strings.HasSuffix(n, "NOTES.txt") {
			o.notes = files[n]
			continue
		}
		for i, doc := range strings.Split(files[n], "\n---\n") {
			if strings.TrimSpace(strings.ReplaceAll(doc, "---", "")) == "" {
				continue
			}
			obj, _, err := decoder.Decode([]byte(doc), nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s, document %d: %w\n%s", n, i, err, doc)
			}
			o.all = append(o.all, obj)
			switch x := obj.(type) {
			case *appsv1.Deployment:
				o.deployment = x
			case *corev1.Service:
				o.services = append(o.services, x)
			case *corev1.ConfigMap:
				o.configMaps[x.Name] = x
			case *policyv1.PodDisruptionBudget:
				o.pdb = x
			case *networkingv1.NetworkPolicy:
				o.netpol = x
			}
		}
	}
	return o, nil
}

func container(d *appsv1.Deployment, name string) *corev1.Container {
	for i := range d.Spec.Template.Spec.Containers {
		if d.Spec.Template.Spec.Containers[i].Name == name {
			return &d.Spec.Template.Spec.Containers[i]
		}
	}
	return nil
}

func env(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// A route map as a user would give it in values.config.
var routeMap = map[string]any{
	"routes": []any{map[string]any{
		"name": "contact", "method": "GET", "path": "/api/contacts/{id}", "kind": "read",
		"subject": map[string]any{"entity": "contact", "from": "path", "name": "id"},
		"fields":  map[string]any{"email": "contact"},
	}},
}

func TestChartRendersValidObjectsForEachWayToRunIt(t *testing.T) {
	c := loadChart(t)
	gdprgateImage := ociimage.Gdprgate.Repository + ":" + ociimage.DefaultTag
	for _, tc := range []struct {
		name   string
		values map[string]any
		check  func(t *testing.T, o *objects)
	}{
		{"sidecar beside Envoy in the API's pod, roles from a trusted header", map[string]any{
			"redis":  map[string]any{"url": "redis://redis:6379/0"},
			"config": routeMap,
			"envoy":  map[string]any{"trustRolesHeader": true, "requestBodyPrefixes": []any{"/api/outbound/"}},
		}, func(t *testing.T, o *objects) {
			d := o.deployment
			var names []string
			for _, ct := range d.Spec.Template.Spec.Containers {
				names = append(names, ct.Name)
			}
			if !slices.Equal(names, []string{"crm", "envoy", "gdprgate"}) {
				t.Errorf("containers %v", names)
			}
			if img := container(d, "crm").Image; img != ociimage.ExampleCRM.Repository+":"+ociimage.DefaultTag {
				t.Errorf("the example API's image %s is not the one make image builds", img)
			}
			g := container(d, "gdprgate")
			if e := env(g, "GDPRGATE_REDIS_URL"); e == nil || e.Value != "redis://redis:6379/0" {
				t.Errorf("redis url %+v", e)
			}
			// Only Envoy's port is open to other pods.
			if len(o.netpol.Spec.Ingress) != 1 || o.netpol.Spec.Ingress[0].Ports[0].Port.String() != "http" {
				t.Errorf("network policy %+v", o.netpol.Spec.Ingress)
			}
			if o.services[0].Spec.Ports[0].TargetPort.String() != "http" {
				t.Errorf("service %+v", o.services[0].Spec.Ports)
			}
			// The route map arrives as gdprgate's --config, and loads.
			cm := o.configMaps["shop-gdprgate-config"]
			if cm == nil {
				t.Fatalf("config maps %v", o.configMaps)
			}
			if cfg, err := config.Parse([]byte(cm.Data["gdprgate.yaml"])); err != nil {
				t.Errorf("the rendered --config does not load: %v\n%s", err, cm.Data["gdprgate.yaml"])
			} else if cfg.Admin.Console {
				t.Error("the admin console is on although console.enabled is not set")
			}
			bs, err := bootstrapcheck.Check([]byte(o.configMaps["shop-gdprgate-envoy"].Data["envoy.yaml"]))
			if err != nil {
				t.Fatalf("the Envoy bootstrap: %v", err)
			}
			if n := len(bs.GetStaticResources().GetClusters()); n != 2 {
				t.Errorf("%d clusters", n)
			}
		}},
		{"the admin console enabled beside the user's admin settings", map[string]any{
			"redis":   map[string]any{"url": "redis://redis:6379/0"},
			"config":  map[string]any{"routes": routeMap["routes"], "admin": map[string]any{"max_body_bytes": 1 << 20}},
			"console": map[string]any{"enabled": true},
			"envoy":   map[string]any{"trustRolesHeader": true},
		}, func(t *testing.T, o *objects) {
			y := o.configMaps["shop-gdprgate-config"].Data["gdprgate.yaml"]
			cfg, err := config.Parse([]byte(y))
			if err != nil {
				t.Fatalf("the rendered --config does not load: %v\n%s", err, y)
			}
			if !cfg.Admin.Console || cfg.Admin.MaxBodyBytes != 1<<20 || len(cfg.Routes) != 1 {
				t.Errorf("console %v, admin.max_body_bytes %d, %d routes:\n%s", cfg.Admin.Console, cfg.Admin.MaxBodyBytes, len(cfg.Routes), y)
			}
		}},
		{"sidecar with roles from verified JWTs", map[string]any{
			"redis":    map[string]any{"existingSecret": "redis-credentials"},
			"replicas": 1,
			"envoy":    map[string]any{"jwt": map[string]any{"issuer": "https://idp.example.com/", "audiences": []any{"crm"}, "jwks": `{"keys":[]}`}},
		}, func(t *testing.T, o *objects) {
			boot := o.configMaps["shop-gdprgate-envoy"].Data["envoy.yaml"]
			if !strings.Contains(boot, "jwt_authn") || !strings.Contains(boot, "remove: x-gdpr-roles") {
				t.Errorf("bootstrap without JWT verification:\n%s", boot)
			}
			if _, err := bootstrapcheck.Check([]byte(boot)); err != nil {
				t.Errorf("the Envoy bootstrap: %v", err)
			}
			e := env(container(o.deployment, "gdprgate"), "GDPRGATE_REDIS_URL")
			if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name != "redis-credentials" {
				t.Errorf("redis url from the secret: %+v", e)
			}
			// One replica: a budget of one would block every drain.
			if o.pdb.Spec.MinAvailable.IntValue() != 0 {
				t.Errorf("pdb %+v", o.pdb.Spec)
			}
		}},
		{"shared Deployment on Redis Sentinel", map[string]any{
			"mode":          "shared",
			"replicas":      3,
			"redis":         map[string]any{"sentinel": map[string]any{"addresses": []any{"s-0:26379", "s-1:26379"}, "masterName": "gdpr"}},
			"networkPolicy": map[string]any{"adminFrom": []any{map[string]any{"podSelector": map[string]any{"matchLabels": map[string]any{"team": "dpo"}}}}},
		}, func(t *testing.T, o *objects) {
			g := container(o.deployment, "gdprgate")
			if len(o.deployment.Spec.Template.Spec.Containers) != 1 || g == nil || *o.deployment.Spec.Replicas != 3 {
				t.Fatalf("deployment %+v", o.deployment.Spec)
			}
			if e := env(g, "GDPRGATE_REDIS_URL"); e.Value != "redis-sentinel://s-0:26379,s-1:26379/gdpr?db=0" {
				t.Errorf("sentinel url %q", e.Value)
			}
			p := o.services[0].Spec.Ports[0]
			if p.Name != "grpc" || p.Port != 9191 || p.AppProtocol == nil || *p.AppProtocol != "grpc" {
				t.Errorf("service port %+v", p)
			}
			in := o.netpol.Spec.Ingress
			if len(in) != 2 || in[0].Ports[0].Port.String() != "grpc" || in[0].From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "envoy" ||
				in[1].Ports[0].Port.String() != "admin" || in[1].From[0].PodSelector.MatchLabels["team"] != "dpo" {
				t.Errorf("network policy %+v", in)
			}
			if o.pdb.Spec.MinAvailable.IntValue() != 1 {
				t.Errorf("pdb %+v", o.pdb.Spec)
			}
			if _, ok := o.configMaps["shop-gdprgate-envoy"]; ok {
				t.Error("shared mode renders an Envoy bootstrap")
			}
		}},
		{"shared on Redis Cluster with the route map and policy from ConfigMaps", map[string]any{
			"mode":              "shared",
			"redis":             map[string]any{"cluster": map[string]any{"addresses": []any{"c-0:7000", "c-1:7000"}}},
			"existingConfigMap": "my-route-map",
			"policy":            map[string]any{"files": map[string]any{"authz.rego": "package gdprgate.authz\n"}},
			"hashKey":           map[string]any{"existingSecret": "gdprgate-hash"},
		}, func(t *testing.T, o *objects) {
			g := container(o.deployment, "gdprgate")
			if e := env(g, "GDPRGATE_REDIS_URL"); e.Value != "redis-cluster://c-0:7000,c-1:7000" {
				t.Errorf("cluster url %q", e.Value)
			}
			if !slices.Contains(g.Args, "--policy") || env(g, "GDPRGATE_HASH_KEY") == nil {
				t.Errorf("args %v env %v", g.Args, g.Env)
			}
			vols := map[string]string{}
			for _, v := range o.deployment.Spec.Template.Spec.Volumes {
				vols[v.Name] = v.ConfigMap.Name
			}
			if vols["gdprgate-config"] != "my-route-map" || vols["gdprgate-policy"] != "shop-gdprgate-policy" {
				t.Errorf("volumes %v", vols)
			}
			if _, ok := o.configMaps["shop-gdprgate-config"]; ok {
				t.Error("a config map is rendered although existingConfigMap names one")
			}
			if o.configMaps["shop-gdprgate-policy"].Data["authz.rego"] == "" {
				t.Error("policy config map lacks the file")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := render(c, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			g := container(o.deployment, "gdprgate")
			if g == nil {
				t.Fatal("no gdprgate container")
			}
			if g.Image != gdprgateImage {
				t.Errorf("gdprgate image %s, make image builds %s", g.Image, gdprgateImage)
			}
			if g.StartupProbe == nil || g.StartupProbe.GRPC == nil || g.StartupProbe.GRPC.Port != 9191 ||
				g.LivenessProbe.HTTPGet.Path != "/healthz" || g.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("probes: startup %+v liveness %+v readiness %+v", g.StartupProbe, g.LivenessProbe, g.ReadinessProbe)
			}
			ps := o.deployment.Spec.Template.Spec.SecurityContext
			if ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || *ps.RunAsUser != int64(ociimage.UID) {
				t.Errorf("pod security %+v", ps)
			}
			for _, ct := range o.deployment.Spec.Template.Spec.Containers {
				if sc := ct.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s: root filesystem writable", ct.Name)
				}
			}
			if o.pdb == nil || o.netpol == nil {
				t.Fatal("no PodDisruptionBudget or NetworkPolicy")
			}
			sel := o.deployment.Spec.Selector.MatchLabels
			for what, labels := range map[string]map[string]string{"pdb": o.pdb.Spec.Selector.MatchLabels, "networkpolicy": o.netpol.Spec.PodSelector.MatchLabels, "service": o.services[0].Spec.Selector} {
				for k, v := range labels {
					if sel[k] != v || o.deployment.Spec.Template.Labels[k] != v {
						t.Errorf("%s selects %s=%s, which the pods do not carry", what, k, v)
					}
				}
			}
			tc.check(t, o)
		})
	}
}

func TestChartRefusesIncompleteOrMistypedValues(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"no Redis", map[string]any{"envoy": map[string]any{"trustRolesHeader": true}}, "give exactly one of redis.url"},
		{"two Redis", map[string]any{"mode": "shared", "redis": map[string]any{"url": "redis://a:6379", "cluster": map[string]any{"addresses": []any{"b:7000"}}}}, "give exactly one"},
		{"a mistyped key", map[string]any{"replica": 2, "redis": map[string]any{"url": "redis://a:6379"}}, "replica"},
		{"an unknown mode", map[string]any{"mode": "both", "redis": map[string]any{"url": "redis://a:6379"}}, "mode"},
		{"a Redis URL that is no Redis", map[string]any{"redis": map[string]any{"url": "http://a"}}, "/redis/url"},
		{"the console with a config the chart does not write", map[string]any{"redis": map[string]any{"url": "redis://a:6379"}, "envoy": map[string]any{"trustRolesHeader": true}, "existingConfigMap": "mine", "console": map[string]any{"enabled": true}}, "admin.console: true in your own"},
		{"a mistyped console key", map[string]any{"redis": map[string]any{"url": "redis://a:6379"}, "envoy": map[string]any{"trustRolesHeader": true}, "console": map[string]any{"enable": true}}, "enable"},
		{"sidecar without a way to know roles", map[string]any{"redis": map[string]any{"url": "redis://a:6379"}}, "envoy.jwt.issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(c, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
