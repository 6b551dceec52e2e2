package auditretention_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/auditretention"
	"github.com/gdprgate/gdprgate/internal/testredis"
	"github.com/gdprgate/gdprgate/policy/model"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fill appends n entries a day apart, the oldest n-1 days before t0, each
// about another subject (another shard on a sharded store).
func fill(t *testing.T, s cache.Store, n int) {
	t.Helper()
	for i := range n {
		e := audit.Entry{Actor: "t", Action: "test", Object: fmt.Sprint(i), Time: t0.AddDate(0, 0, i-n+1), Subject: fmt.Sprintf("h:%d", i)}
		if _, err := s.AppendAudit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func objects(t *testing.T, s cache.Store) []string {
	t.Helper()
	es, _, err := s.Audit(context.Background(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Object)
	}
	return out
}

func readExport(t *testing.T, path string) []audit.Entry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e audit.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func TestOldEntriesAreExportedThenTrimmed(t *testing.T) {
	cases := []struct {
		name       string
		maxAge     time.Duration
		maxEntries int64
		page       int
		kept       []string
	}{
		{"by age", 5*24*time.Hour + time.Hour, 0, 1000, []string{"4", "5", "6", "7", "8", "9"}},
		{"by count", 0, 3, 1000, []string{"7", "8", "9"}},
		{"by age or count, in small pages", 5 * 24 * time.Hour, 2, 2, []string{"8", "9"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := memstore.New(cache.Options{})
			fill(t, s, 10)
			before, _, _ := s.Audit(context.Background(), "", 0)
			file := filepath.Join(t.TempDir(), "audit.ndjson")
			r, err := auditretention.New(auditretention.Options{Store: s, MaxAge: tc.maxAge, MaxEntries: tc.maxEntries, File: file, Page: tc.page,
				Clock: func() time.Time { return t0 }})
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Pass(context.Background())
			if err != nil || !res.Leader {
				t.Fatalf("pass = %+v, %v", res, err)
			}
			got := objects(t, s)
			if fmt.Sprint(got) != fmt.Sprint(tc.kept) {
				t.Fatalf("kept %v, want %v", got, tc.kept)
			}
			exported := readExport(t, file)
			if len(exported)+len(got) != 10 || res.Exported != len(exported) {
				t.Fatalf("exported %d (reported %d), kept %d: an entry was lost or doubled", len(exported), res.Exported, len(got))
			}
			for i, e := range exported {
				if e.ID != before[i].ID || e.Object != before[i].Object {
					t.Fatalf("export line %d = %+v, want %+v (oldest first, with its id)", i, e, before[i])
				}
			}
			// Nothing more is due.
			if res, err := r.Pass(context.Background()); err != nil || res.Exported != 0 {
				t.Fatalf("second pass = %+v, %v", res, err)
			}
		})
	}
}

func TestNothingIsTrimmedUnlessExported(t *testing.T) {
	s := memstore.New(cache.Options{})
	fill(t, s, 6)
	var mu sync.Mutex
	status, got := http.StatusServiceUnavailable, 0
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer sink-token" || r.Header.Get("Content-Type") != "application/x-ndjson" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if status == http.StatusOK {
			got += bytes.Count(b, []byte("\n"))
		}
		w.WriteHeader(status)
	}))
	defer sink.Close()
	r, err := auditretention.New(auditretention.Options{Store: s, MaxEntries: 2, URL: sink.URL, Token: "sink-token", Clock: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pass(context.Background()); err == nil {
		t.Fatal("a pass whose export failed reported success")
	}
	if n := len(objects(t, s)); n != 6 {
		t.Fatalf("%d entries left after a failed export, want all 6", n)
	}
	mu.Lock()
	status = http.StatusOK
	mu.Unlock()
	if res, err := r.Pass(context.Background()); err != nil || res.Exported != 4 || res.Trimmed != 4 {
		t.Fatalf("pass = %+v, %v", res, err)
	}
	if got != 4 || len(objects(t, s)) != 2 {
		t.Fatalf("sink received %d, store keeps %d", got, len(objects(t, s)))
	}
}

func TestOneSidecarAtATime(t *testing.T) {
	s := memstore.New(cache.Options{})
	fill(t, s, 4)
	dir := t.TempDir()
	a, _ := auditretention.New(auditretention.Options{Store: s, MaxEntries: 1, File: filepath.Join(dir, "a"), Holder: "a"})
	b, _ := auditretention.New(auditretention.Options{Store: s, MaxEntries: 1, File: filepath.Join(dir, "b"), Holder: "b"})
	if res, err := a.Pass(context.Background()); err != nil || !res.Leader {
		t.Fatalf("a = %+v, %v", res, err)
	}
	if res, err := b.Pass(context.Background()); err != nil || res.Leader || res.Exported != 0 {
		t.Fatalf("b acted while a held the lease: %+v, %v", res, err)
	}
}

func TestOptionsAreChecked(t *testing.T) {
	s := memstore.New(cache.Options{})
	for _, o := range []auditretention.Options{
		{Store: s, File: "x"},
		{Store: s, MaxAge: time.Hour},
		{MaxAge: time.Hour, File: "x"},
	} {
		if _, err := auditretention.New(o); err == nil {
			t.Fatalf("options %+v accepted", o)
		}
	}
}

// TestShardedTrailIsTrimmedInOrder: on Redis the trail is one stream per
// shard; retention trims the oldest entries across all of them.
func TestShardedTrailIsTrimmedInOrder(t *testing.T) {
	srv := testredis.Start(t)
	s, err := redisstore.New(context.Background(), srv.URL(), cache.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fill(t, s, 40)
	// Subjects' writes land in their shards' streams too.
	if err := s.PutSubject(context.Background(), model.Subject{Ref: model.SubjectRef{Entity: "contact", ID: "c-1"}, Origin: t0}, audit.Entry{Actor: "t", Action: "subject.put", Object: "40", Time: t0}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "audit.ndjson")
	r, err := auditretention.New(auditretention.Options{Store: s, MaxEntries: 5, File: file, Page: 7})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := objects(t, s); fmt.Sprint(got) != "[36 37 38 39 40]" {
		t.Fatalf("kept %v", got)
	}
	ex := readExport(t, file)
	for i, e := range ex {
		if e.Object != fmt.Sprint(i) {
			t.Fatalf("export %d = %s: not in write order", i, e.Object)
		}
	}
	if len(ex) != 36 {
		t.Fatalf("exported %d, want 36", len(ex))
	}
}
