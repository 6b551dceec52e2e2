package redisstore_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"strings"
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
	asks := asksAt(30, now)
	got, errs := factsAtOnce(s, asks, func(int) (context.Context, context.CancelFunc) { return ctx, func() {} })
	if !redisstore.RawReadOverTLSForTest(s) {
		t.Fatal("the misses were not read over the batcher's own TLS connection")
	}
	// go-redis's reading: the admin path does not batch.
	admin := newStore(t, u, generous(cache.Options{MaxSubjects: 1}))
	for i, want := range sameAsRead(t, "over TLS: ", asks, got, errs, admin, cache.ForAdmin(ctx)) {
		if want.Known != (i < 20) {
			t.Errorf("%v: known = %v", contact(i), want.Known)
		}
	}
}
