package authz_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
)

// TestProcessStateCarriesNothingToTheNextExchange: ext_proc exchanges of
// different roles and targets (a list, a record, a missing subject's
// immediate answer), run concurrently on one server together with
// exchanges the client cancels at any point, each answer the same as the
// one its request got alone — so nothing of a stream (headers, body,
// metadata, the exchange, its role) reaches a later stream that reuses
// its pooled state.
func TestProcessStateCarriesNothingToTheNextExchange(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	upstream := crm.New(sc.Now)
	env := envoytest.New(envoytest.Options{Proc: sc.GRPC(t), Upstream: upstream, SpuriousIsError: true, MessageTimeout: 10 * time.Second})
	t.Cleanup(env.Close)
	type call struct{ target, roles string }
	var calls []call
	for _, target := range []string{"/api/contacts", "/api/contacts/c-1", "/api/contacts/c-2", "/api/contacts/c-404", "/api/contacts/c-2/calls"} {
		for _, roles := range []string{"agent", "auditor", "supervisor", "dpo", ""} {
			calls = append(calls, call{target, roles})
		}
	}
	do := func(ctx context.Context, c call) (string, error) {
		req, err := http.NewRequest("GET", "http://crm.local"+c.target, nil)
		if err != nil {
			return "", err
		}
		if c.roles != "" {
			req.Header.Set("x-gdpr-roles", c.roles)
		}
		resp, err := env.Do(ctx, req)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d %s %q %q", resp.Status, resp.Body, resp.Header.Get("x-gdpr-coverage"), resp.Header.Get("content-length")), nil
	}
	want := make([]string, len(calls))
	for i, c := range calls {
		got, err := do(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = got
	}
	distinct := map[string]bool{}
	for _, w := range want {
		distinct[w] = true
	}
	if len(distinct) < len(calls)/2 {
		t.Fatalf("only %d distinct answers to %d requests: the roles and targets do not tell exchanges apart", len(distinct), len(calls))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 20 {
				i := (g*7 + k*3) % len(calls)
				if (g+k)%5 == 0 {
					// A stream the client gives up on at some point.
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(k%7)*100*time.Microsecond)
					_, _ = do(ctx, calls[i])
					cancel()
					continue
				}
				got, err := do(context.Background(), calls[i])
				if err != nil {
					t.Error(err)
					return
				}
				if got != want[i] {
					t.Errorf("%s as %q: got %s\nwant %s", calls[i].target, calls[i].roles, got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
}
