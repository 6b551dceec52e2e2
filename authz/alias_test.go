package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestAnswersUnderAnotherSpellingOverGRPC: in front of a CRM that finds
// contacts under any letter case of their id and with a Rails format
// suffix, Check and ext_proc over real gRPC judge the answer for the
// subject it states (subject.confirm in the example configuration), with
// ext_authz in the chain and with ext_proc alone. On main the agent saw
// archived Bob in clear under C-2 and c-2.json, and wiped Heidi under C-8.
func TestAnswersUnderAnotherSpellingOverGRPC(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	ref := model.SubjectRef{Entity: "contact", ID: "c-8"}
	apptest.QueueWipe(t, sc.App.Store, ref, sc.Now)
	upstream := crm.New(sc.Now, crm.CaseInsensitiveIDs(), crm.FormatSuffix())
	envs := map[string]*envoytest.Envoy{
		"ext_authz and ext_proc": envoytest.New(envoytest.Options{Authz: sc.GRPC(t), Proc: sc.GRPC(t), Upstream: upstream,
			ForwardAuthzMetadata: true, SpuriousIsError: true, MessageTimeout: 5 * time.Second, AuthzTimeout: 5 * time.Second}),
		"ext_proc alone": envoytest.New(envoytest.Options{Proc: sc.GRPC(t), Upstream: upstream, SpuriousIsError: true,
			MessageTimeout: 5 * time.Second}),
	}
	for _, env := range envs {
		t.Cleanup(env.Close)
	}
	do := func(t *testing.T, env *envoytest.Envoy, method, target, roles string) *envoytest.Response {
		t.Helper()
		req, err := http.NewRequest(method, "http://crm.local"+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("x-gdpr-roles", roles)
		if method == "PATCH" {
			req.Body = http.NoBody
			req.Header.Set("content-type", "application/json")
		}
		resp, err := env.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for name, env := range envs {
		t.Run(name, func(t *testing.T) {
			direct := do(t, env, "GET", "/api/contacts/c-2", "agent")
			for _, target := range []string{"/api/contacts/C-2", "/api/contacts/c-2.json", "/api/contacts/C-2/calls"} {
				resp := do(t, env, "GET", target, "agent")
				if resp.Status != 200 || resp.Upstream == nil {
					t.Fatalf("%s: %d %s", target, resp.Status, resp.Body)
				}
				for _, leak := range []string{"Bob", "Baker", "+4930"} {
					if bytes.Contains(resp.Body, []byte(leak)) {
						t.Errorf("%s: %s in clear: %s", target, leak, resp.Body)
					}
				}
				if !strings.HasSuffix(target, "/calls") {
					var m map[string]any
					if err := json.Unmarshal(resp.Body, &m); err != nil || m["id"] != "c-2" {
						t.Fatalf("%s: %v %s", target, err, resp.Body)
					}
					if got, want := resp.Header.Get("x-gdpr-coverage"), direct.Header.Get("x-gdpr-coverage"); got != want {
						t.Errorf("%s: x-gdpr-coverage %q, want c-2's %q", target, got, want)
					}
				}
			}
			for _, target := range []string{"/api/contacts/C-8", "/api/contacts/c-8.json", "/api/contacts/C-8/export"} {
				resp := do(t, env, "GET", target, "auditor")
				if resp.Status != 404 || bytes.Contains(resp.Body, []byte("Heidi")) || !bytes.Contains(resp.Body, []byte("subject_not_found")) {
					t.Errorf("%s: %d %s, want 404 subject_not_found", target, resp.Status, resp.Body)
				}
			}
			// A write acts before it answers: its id must be canonical.
			if resp := do(t, env, "PATCH", "/api/contacts/C-2", "supervisor"); resp.Status != 400 || resp.Upstream != nil ||
				!bytes.Contains(resp.Body, []byte("subject_id_not_canonical")) {
				t.Errorf("PATCH C-2: %d %s (upstream reached: %v), want 400 before the backend", resp.Status, resp.Body, resp.Upstream != nil)
			}
		})
	}
}
