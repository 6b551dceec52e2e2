package gate

import (
	"net/http"
	"testing"
)

func TestCanonicalHeaderIsNetHTTPsKey(t *testing.T) {
	for _, name := range []string{"content-type", "x-gdpr-roles", "X-GDPR-ROLES", "x-gdpr-roles", "Content-Type", "x_under", "bad name", "", "ümlaut", "x-request-id"} {
		for range 2 { // computed, then cached
			if got, want := CanonicalHeader(name), http.CanonicalHeaderKey(name); got != want {
				t.Fatalf("CanonicalHeader(%q) = %q, want %q", name, got, want)
			}
		}
	}
	h := http.Header{}
	h.Add("X-Gdpr-Roles", "agent")
	h.Add("x-gdpr-roles", "auditor")
	if got := HeaderGetter(h)("x-gdpr-roles"); got != "agent,auditor" {
		t.Fatalf("HeaderGetter: %q", got)
	}
}
