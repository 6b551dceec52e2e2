package forget

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestWipeOfTheExampleCRMContact runs the reference scenario's wipe of c-7
// against the example CRM, whose first DELETE of the contact fails, and
// checks each of the three routes removed data exactly once.
func TestWipeOfTheExampleCRMContact(t *testing.T) {
	f := newFixture(t, model.Config{})
	c := crm.New(time.Now())
	hs := httptest.NewServer(c)
	t.Cleanup(hs.Close)
	f.url = hs.URL
	if _, ok := c.Contact("c-7"); !ok {
		t.Skip("the example CRM has no c-7")
	}
	c.FailNext("DELETE", "/api/contacts/c-7", 1)
	f.enqueue()
	stop := run(f.worker("w1"))
	defer stop()
	rec := f.waitStatus(cache.WipeDone)
	if rec.Steps[0].Attempts != 2 {
		t.Errorf("contact step attempts %d, want 2 (one injected failure)", rec.Steps[0].Attempts)
	}
	for _, route := range []string{crm.RouteDeleteContact, crm.RouteDeleteCalls, crm.RouteDeleteIssues} {
		if n := c.Deleted()[route]; n != 1 {
			t.Errorf("%s removed data %d times, want 1", route, n)
		}
	}
	if _, ok := c.Contact("c-7"); ok || len(c.Calls("c-7")) != 0 || len(c.Issues("c-7")) != 0 {
		t.Error("c-7 or its calls/issues survived the wipe")
	}
}
