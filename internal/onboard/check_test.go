package onboard

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/config"
)

func exampleConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse(crm.GatewayConfigYAML)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func aliceJSON(t *testing.T) []byte {
	t.Helper()
	c, ok := crm.New(time.Now()).Contact("c-1")
	if !ok {
		t.Fatal("no Alice")
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckFindsEveryPathOfTheRightRoute(t *testing.T) {
	rep, err := Check(exampleConfig(t), aliceJSON(t), "contact")
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.Failed(); len(f) != 0 {
		t.Fatalf("failed: %q", f)
	}
	var out strings.Builder
	if err := rep.Write(&out); err != nil {
		t.Fatal(err)
	}
	// The eleven fields and where the answer states its subject (confirm).
	if !strings.Contains(out.String(), "12 of 12 paths select a value") || !strings.Contains(out.String(), "ok       subject id") || strings.Contains(out.String(), "MISSING") {
		t.Errorf("report:\n%s", out.String())
	}
}

func TestCheckNamesThePathsThatSelectNothing(t *testing.T) {
	cfg := exampleConfig(t)
	for i := range cfg.Routes {
		if cfg.Routes[i].Name == "contact" {
			cfg.Routes[i].Fields["profile.emial"] = "contact" // a typo
		}
	}
	tests := []struct {
		name, sample, route string
		failed              []string
		shows               []string
	}{
		{"a typo", string(aliceJSON(t)), "contact", []string{"route contact: 1 mapped path(s) select nothing"}, []string{"MISSING  profile.emial", "ok       email"}},
		{"a list where the route expects a record", "[" + string(aliceJSON(t)) + "]", "contact",
			[]string{"route contact: the sample is a JSON array"}, []string{"PROBLEM"}},
		{"keys in another case are found", `{"EMAIL":"a","Health_Notes":"b"}`, "contact", []string{"select nothing"}, []string{"ok       email", "ok       health_notes"}},
		{"a subject named twice", `{"contact_id":"c-1","CONTACT_ID":"c-8","reporter_email":"x","notes":"y"}`, "issue",
			[]string{"names its subject (contact_id) more than once"}, nil},
		{"an answer that does not state its subject", `{"email":"a"}`, "contact", []string{"select nothing"}, []string{"MISSING  subject id", "ok       email"}},
		{"the list route's subject and fields", `{"data":[{"id":"c-1","email":"a"}]}`, "contact-list", []string{"select nothing"}, []string{"ok       subject data.#.id", "ok       data.#.email", "MISSING  data.#.phone"}},
		{"every route, the sample matching one in part", `{"email":"a"}`, "", []string{"route contact:", "route contact-update:"}, []string{"not this route's answer"}},
		{"every route, the sample matching none", `{"nothing":"here"}`, "", []string{"no route's paths select anything"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Check(cfg, []byte(tt.sample), tt.route)
			if err != nil {
				t.Fatal(err)
			}
			failed := strings.Join(rep.Failed(), "\n")
			if len(tt.failed) == 0 && failed != "" {
				t.Errorf("failed: %s", failed)
			}
			for _, f := range tt.failed {
				if !strings.Contains(failed, f) {
					t.Errorf("failed %q, want %q", failed, f)
				}
			}
			var out strings.Builder
			_ = rep.Write(&out)
			for _, s := range tt.shows {
				if !strings.Contains(out.String(), s) {
					t.Errorf("report lacks %q:\n%s", s, out.String())
				}
			}
		})
	}
}

func TestCheckRefusesWhatItCannotRead(t *testing.T) {
	cfg := exampleConfig(t)
	if _, err := Check(cfg, []byte(`{"email":"a",}`), "contact"); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("invalid sample: %v", err)
	}
	if _, err := Check(cfg, []byte(`{}`), "contcat"); !errors.Is(err, ErrNoRoute) || !strings.Contains(err.Error(), "contact-list") {
		t.Errorf("unknown route: %v", err)
	}
}
