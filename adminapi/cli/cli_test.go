package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/adminapi"
	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/forget"
	"github.com/gdprgate/gdprgate/policy/model"
)

func newServer(t *testing.T) string {
	url, _ := newServerWith(t, nil)
	return url
}

// newServerWith starts an admin API on an in-memory store; tweak changes
// its options, wrap its handler.
func newServerWith(t *testing.T, tweak func(*adminapi.Options), wrap ...func(http.Handler) http.Handler) (string, *memstore.Store) {
	t.Helper()
	st := memstore.New(cache.Options{})
	o := adminapi.Options{
		Store:    st,
		Tokens:   []adminapi.Token{{Name: "ops", SHA256: adminapi.HashToken("secret"), Scopes: []string{adminapi.ScopeAdmin}}},
		WipePlan: forget.Plan{"contact": {{Name: "contact", Method: "DELETE", Path: "/api/contacts/{id}"}}},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if tweak != nil {
		tweak(&o)
	}
	s, err := adminapi.New(o)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = s
	for _, w := range wrap {
		h = w(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs.URL, st
}

func runCLI(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(context.Background(), append([]string{"--admin-url", url, "--token", "secret"}, args...), &out, &errb)
	return out.String() + errb.String(), err
}

func TestCLICommandsAgainstARealServer(t *testing.T) {
	url := newServer(t)
	out, err := runCLI(t, url, "load-registers", "../testdata/seed.yaml")
	if err != nil || !strings.Contains(out, "registers replaced: 4 sensitivities") || !strings.Contains(out, `"stored":1`) {
		t.Fatalf("load-registers: %v\n%s", err, out)
	}

	dir := t.TempDir()
	good := filepath.Join(dir, "ev.ndjson")
	os.WriteFile(good, []byte(`{"subject":{"entity":"contact","id":"c-2"},"legal_key":"CC","origin":"2026-01-01T00:00:00Z"}`+"\n"), 0o600)
	if out, err = runCLI(t, url, "import-evidence", good); err != nil || !strings.Contains(out, "1 stored") {
		t.Fatalf("import-evidence: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "ev.json")
	os.WriteFile(bad, []byte(` [{"subject":{"entity":"contact","id":"c-2"},"legal_key":"MK","origin":"2026-01-01T00:00:00Z"}]`), 0o600)
	if out, err = runCLI(t, url, "import-evidence", "--atomic", bad); err == nil || !strings.Contains(out, "line 1: evidence_key") {
		t.Fatalf("bad import: %v\n%s", err, out)
	}

	if out, err = runCLI(t, url, "wipe", "contact", "c-7", "--dry-run"); err != nil || !strings.Contains(out, `"dry_run": true`) {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "wipe", "contact", "c-7"); err != nil || !strings.Contains(out, `"status": "queued"`) {
		t.Fatalf("wipe: %v\n%s", err, out)
	}
	id := between(out, `"id": "`, `"`)
	if out, err = runCLI(t, url, "wipe-status", id); err != nil || !strings.Contains(out, `"/api/contacts/c-7"`) {
		t.Fatalf("wipe-status: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "subject", "contact", "c-7"); err != nil || !strings.Contains(out, `"restricted": true`) {
		t.Fatalf("subject: %v\n%s", err, out)
	}
}

// TestLoadRegistersNeedsConfirmToTurnEnforcementOff: a registers file whose
// config turns gdpr_enforced off is refused unless --confirm says so.
func TestLoadRegistersNeedsConfirmToTurnEnforcementOff(t *testing.T) {
	url := newServer(t)
	if out, err := runCLI(t, url, "load-registers", "../testdata/seed.yaml"); err != nil {
		t.Fatalf("load-registers: %v\n%s", err, out)
	}
	data, err := os.ReadFile("../testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	off := filepath.Join(t.TempDir(), "off.yaml")
	os.WriteFile(off, bytes.Replace(data, []byte("gdpr_enforced: true"), []byte("gdpr_enforced: false"), 1), 0o600)
	out, err := runCLI(t, url, "load-registers", off)
	if err == nil || !strings.Contains(err.Error(), "--confirm") {
		t.Fatalf("load without --confirm: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "load-registers", off, "--confirm"); err != nil {
		t.Fatalf("load with --confirm: %v\n%s", err, out)
	}
}

func TestCLIErrors(t *testing.T) {
	url := newServer(t)
	var ae *APIError
	if _, err := runCLI(t, url, "wipe", "invoice", "1"); !errors.As(err, &ae) || ae.Status != 422 {
		t.Fatalf("unknown entity: %v", err)
	}
	var out bytes.Buffer
	err := Run(context.Background(), []string{"--admin-url", url, "--token", "wrong", "subject", "contact", "c-1"}, &out, &out)
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("bad token: %v", err)
	}
	for _, args := range [][]string{{}, {"nope"}, {"wipe", "contact"}, {"subject", "x"}} {
		if _, err := runCLI(t, url, args...); !errors.Is(err, ErrUsage) {
			t.Errorf("%v: %v, want usage error", args, err)
		}
	}
}

func between(s, a, b string) string {
	_, rest, _ := strings.Cut(s, a)
	v, _, _ := strings.Cut(rest, b)
	return v
}

func TestCLIListsApprovesHeldDeletionsAndShowsTheDueReport(t *testing.T) {
	url, st := newServerWith(t, nil)
	if out, err := runCLI(t, url, "load-registers", "../testdata/seed.yaml"); err != nil {
		t.Fatalf("load-registers: %v\n%s", err, out)
	}
	ctx := context.Background()
	now := time.Now().UTC()
	for _, id := range []string{"lc-1", "lc-2"} {
		rec := cache.WipeRecord{ID: id, Subject: model.SubjectRef{Entity: "contact", ID: "c-" + id}, Status: cache.WipeHeld, HeldFor: "approval",
			Kind: cache.KindErasure, Bits: 0b1000, Reason: cache.ReasonLifecycle, CreatedAt: now, UpdatedAt: now,
			Steps: []cache.WipeStep{{Name: "health", Method: "PATCH", Path: "/api/contacts/x", Status: "pending"}}}
		if err := st.EnqueueWipe(ctx, rec, audit.Entry{Actor: "lifecycle", Action: "deletion.hold"}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runCLI(t, url, "deletions")
	if err != nil || !strings.Contains(out, "lc-1") || !strings.Contains(out, "held (approval)") || !strings.Contains(out, "2 deletions") {
		t.Fatalf("deletions: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "deletions", "approve"); !errors.Is(err, ErrUsage) {
		t.Fatalf("approve without ids: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "deletions", "approve", "--all", "--dry-run"); err != nil || !strings.Contains(out, "lc-1\tPATCH /api/contacts/x") || !strings.Contains(out, "would count 2") || !strings.Contains(out, "nothing decided") {
		t.Fatalf("approve --dry-run: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "deletions"); err != nil || !strings.Contains(out, "2 deletions") {
		t.Fatalf("deletions after a dry run: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "deletions", "approve", "lc-1"); err != nil || !strings.Contains(out, "lc-1\tqueued") || !strings.Contains(out, "1 deletions approved") {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "deletions", "reject", "--all"); err != nil || !strings.Contains(out, "lc-2\trejected") {
		t.Fatalf("reject --all: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "deletions"); err != nil || !strings.Contains(out, "0 deletions") {
		t.Fatalf("deletions after decisions: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "due", "--within", "365d"); err != nil || !strings.Contains(out, "subjects with transitions until") {
		t.Fatalf("due: %v\n%s", err, out)
	}
	if out, err = runCLI(t, url, "due", "--within", "soon"); err == nil || !strings.Contains(err.Error(), "within") {
		t.Fatalf("due with a bad window: %v\n%s", err, out)
	}
}
