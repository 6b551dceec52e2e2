package onboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/examples/crm"
)

// The draft suggested from the example CRM's OpenAPI document is checked
// the way an operator would (`gdprgate routes check`) against the CRM's real
// answers: every path it maps must select a value, or the draft would
// redact nothing where it claims to.
func TestSuggestedRoutesSelectValuesInTheBackendsAnswers(t *testing.T) {
	_, cfg, text := suggestFile(t, "testdata/crm.yaml", Options{Source: "crm.yaml"})
	backend := httptest.NewServer(crm.New(time.Now().Truncate(time.Second)))
	defer backend.Close()
	for _, c := range []struct{ route, path string }{
		{"getContact", "/api/contacts/c-1"},
		{"listContacts", "/api/contacts"},
		{"listContactCalls", "/api/contacts/c-1/calls"},
		{"exportContact", "/api/contacts/c-1/export"},
	} {
		t.Run(c.route, func(t *testing.T) {
			resp, err := http.Get(backend.URL + c.path)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d %v", c.path, resp.StatusCode, err)
			}
			rep, err := Check(cfg, body, c.route)
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			if err := rep.Write(&out); err != nil {
				t.Fatal(err)
			}
			if failed := rep.Failed(); len(failed) != 0 {
				t.Errorf("routes check fails %v on the CRM's answer:\n%s\ndraft:\n%s", failed, out.String(), text)
			}
		})
	}
}
