package authz_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/internal/apptest"
)

// TestExtProcBodiesUpToTheConfiguredLimit: a mapped answer over 4 MiB and
// under body.max_bytes (8 MiB) goes through ext_proc whole and is redacted;
// grpc-go's default receive limit (4 MiB) used to fail such a stream, and
// Envoy answered 500 (issue 10 §6). Larger answers still fail closed:
// gdprgate's own 502 within the envelope headroom, the gRPC limit beyond.
func TestExtProcBodiesUpToTheConfiguredLimit(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	if got := sc.App.Config.Body.MaxBytes; got != 8<<20 {
		t.Fatalf("test premise: body.max_bytes %d, want the 8 MiB default", got)
	}
	conn := sc.GRPC(t)
	tests := []struct {
		name   string
		notes  int // size of the health notes
		status int
	}{
		{"6 MiB is redacted", 6 << 20, 200},
		{"just over body.max_bytes fails closed (gdprgate)", 8<<20 + 100<<10, 502},
		{"far over the gRPC limit fails closed (Envoy)", 12 << 20, 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"id": "c-1", "first_name": "Alice", "health_notes": strings.Repeat("n", tc.notes)})
			env := envoytest.New(envoytest.Options{
				Authz: conn, Proc: conn,
				Upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					_, _ = w.Write(body)
				}),
				// Envoy buffers a whole answer only under a buffer limit
				// that holds it (per_connection_buffer_limit_bytes).
				BufferLimit:    32 << 20,
				MessageTimeout: time.Minute, AuthzTimeout: time.Minute,
				SpuriousIsError: true,
			})
			t.Cleanup(env.Close)
			req, _ := http.NewRequest("GET", "http://crm.local/api/contacts/c-1", nil)
			req.Header.Set("x-gdpr-roles", "agent")
			resp, err := env.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tc.status {
				t.Fatalf("status %d (%s %s), want %d; events %v", resp.Status, resp.LocalReply, resp.Details, tc.status, resp.Events)
			}
			if tc.status != 200 {
				if strings.Contains(string(resp.Body), "nnnn") {
					t.Fatal("a refused answer carries the backend's body")
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(resp.Body, &got); err != nil {
				t.Fatalf("body: %v", err)
			}
			if got["health_notes"] != nil || got["first_name"] != "Alice" {
				t.Fatalf("health notes shown: %v, first_name %v; want the agent's view", got["health_notes"] != nil, got["first_name"])
			}
		})
	}
}
