package redisstore_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/cache/storetest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestStoreMissesOverTLS: a store opened from a rediss:// URL reads its
// decisions' misses through the batcher's own connection over TLS, and
// they are the facts go-redis's reads (the admin path) compute.
//
// The server's certificate is signed by a CA made for the test, trusted
// the way an operator would: SSL_CERT_FILE, which Go reads once per
// process — so the store runs in a child process of this test binary.
func TestStoreMissesOverTLS(t *testing.T) {
	if u := os.Getenv("GDPRGATE_TEST_TLS_STORE_URL"); u != "" {
		storeMissesOverTLS(t, u)
		return
	}
	addr, password, caFile := redisstore.StartTLSRedisForTest(t)
	u := "rediss://:" + url.PathEscape(password) + "@" + addr + "/2"
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreMissesOverTLS$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "GDPRGATE_TEST_TLS_STORE_URL="+u, "SSL_CERT_FILE="+caFile, "SSL_CERT_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestStoreMissesOverTLS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func storeMissesOverTLS(t *testing.T, u string) {
	ctx := context.Background()
	s := seededStore(t, u, generous(cache.Options{MaxSubjects: 1}))
	var evs []model.Evidence
	for i := range 20 { // c-20 .. c-29 are unknown
		evs = append(evs, model.Evidence{Subject: contact(i), LegalisationID: "contract-care", Origin: storetest.T0.AddDate(0, 0, -40*i)})
	}
	if _, err := s.PutEvidence(ctx, evs, audit.Entry{Actor: "t", Action: "evidence.import"}); err != nil {
		t.Fatal(err)
	}
	now := storetest.T0.AddDate(0, 0, 400)
	got := make([]cache.Facts, 30)
	errs := make([]error, len(got))
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = s.Facts(ctx, contact(i), now)
		}()
	}
	wg.Wait()
	if !redisstore.RawReadOverTLSForTest(s) {
		t.Fatal("the misses were not read over the batcher's own TLS connection")
	}
	admin := newStore(t, u, generous(cache.Options{MaxSubjects: 1}))
	actx := cache.ForAdmin(ctx)
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("miss of %v over TLS: %v", contact(i), errs[i])
		}
		want, err := admin.Facts(actx, contact(i), now)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("%v over the raw TLS connection:\n%+v\ngo-redis:\n%+v", contact(i), got[i], want)
		}
		if want.Known != (i < 20) {
			t.Errorf("%v: known = %v", contact(i), want.Known)
		}
	}
}
