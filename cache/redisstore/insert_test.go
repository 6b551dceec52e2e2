package redisstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/testredis"
	"github.com/gdprgate/gdprgate/policy/model"
	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache/storetest"
)

// TestImportOverExistingSubjectsKeepsTheirRecords: an import writes its
// subjects as if new (one HSETNX each); a part meeting a subject that
// exists — inline or moved to its own key — must leave the part's other
// subjects unwritten until it is rebuilt, then merge: every earlier record
// stays, every subject gets its new one, each tag is audited once and the
// indexed-subject count is exact.
func TestImportOverExistingSubjectsKeepsTheirRecords(t *testing.T) {
	srv := testredis.Start(t)
	// Two buckets per tag: a part's subjects share buckets, so the script's
	// undo must not remove a neighbour written before.
	s := seededStore(t, srv.URL(), cache.Options{Buckets: 2})
	ctx := context.Background()
	const n = 3000
	ref := func(i int) model.SubjectRef { return model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("c-%d", i)} }
	before := map[int]int{}
	var old []model.Evidence
	for i := 0; i < n; i += 7 {
		k := 1
		if i%2 == 0 {
			k = 3 // a record over 64 bytes: a stub in its bucket
		}
		for j := range k {
			old = append(old, model.Evidence{Subject: ref(i), LegalisationID: "contract-care", Origin: storetest.T0,
				Reference: fmt.Sprintf("earlier-%d-%s", j, strings.Repeat("r", 20))})
		}
		before[i] = k
	}
	if _, err := s.PutEvidence(ctx, old, audit.Entry{Actor: "t", Action: "evidence.import"}); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	auditLen := func() int64 {
		var sum int64
		keys, err := c.Keys(ctx, "gdprgate:{*}:audit").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k == "gdprgate:{g}:audit" {
				continue
			}
			sum += c.XLen(ctx, k).Val()
		}
		return sum
	}
	a0 := auditLen()
	var evs []model.Evidence
	tags := map[int]bool{}
	for i := range n {
		evs = append(evs, model.Evidence{Subject: ref(i), LegalisationID: "contract-care", Origin: storetest.T0, Reference: "new"})
		tags[redisstore.TagForTest(ref(i))] = true
	}
	if _, err := s.PutEvidence(ctx, evs, audit.Entry{Actor: "t", Action: "evidence.import"}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		rec, err := s.Subject(cache.ForAdmin(ctx), ref(i))
		if err != nil {
			t.Fatal(err)
		}
		var earlier, fresh int
		for _, e := range rec.Evidence {
			if e.Reference == "new" {
				fresh++
			} else {
				earlier++
			}
		}
		if fresh != 1 || earlier != before[i] {
			t.Fatalf("%v: %d new and %d earlier evidence records, want 1 and %d", ref(i), fresh, earlier, before[i])
		}
	}
	if got := auditLen() - a0; got != int64(len(tags)) {
		t.Errorf("the import left %d audit entries, want one per tag (%d)", got, len(tags))
	}
	total, _, err := s.DueCount(ctx, storetest.T0)
	if err != nil {
		t.Fatal(err)
	}
	if total != n {
		t.Errorf("DueCount total %d, want %d subjects", total, n)
	}
}

// TestBatchRepeatingASubjectAnswersEachRecordAsGiven: a batch naming one
// subject several times — without ids, twice with one given id, twice with
// one evidence key — stores each subject's records (the last of a repeated
// id or key wins), answers every record as it was given (with its id), and
// leaves the caller's slice alone.
func TestBatchRepeatingASubjectAnswersEachRecordAsGiven(t *testing.T) {
	srv := testredis.Start(t)
	s := seededStore(t, srv.URL(), cache.Options{})
	ctx := context.Background()
	alice, bob, carol := contact(1), contact(2), contact(3)
	rec := func(ref model.SubjectRef, id, key, reference string) model.Evidence {
		return model.Evidence{Subject: ref, ID: id, LegalisationID: "marketing-consent", EvidenceKey: key, Origin: storetest.T0, Reference: reference}
	}
	in := []model.Evidence{
		rec(alice, "ev-given", "", "first"),
		rec(bob, "", "", "b1"),
		rec(alice, "ev-given", "", "second"),
		rec(bob, "", "", "b2"),
		rec(carol, "", "web-1", "k1"),
		rec(carol, "", "web-1", "k2"),
	}
	given := slices.Clone(in)
	out, err := s.PutEvidence(ctx, in, audit.Entry{Actor: "t", Action: "evidence.import"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(in, given, func(a, b model.Evidence) bool { return a.ID == b.ID && a.Reference == b.Reference }) {
		t.Fatalf("PutEvidence changed its input: %+v", in)
	}
	for i, e := range out {
		if e.Reference != in[i].Reference || e.Subject != in[i].Subject || e.ID == "" || in[i].ID != "" && e.ID != in[i].ID {
			t.Errorf("answer %d = %+v, want the record given (%+v) with its id", i, e, in[i])
		}
	}
	if out[4].ID != out[5].ID {
		t.Errorf("one key, two ids: %q %q", out[4].ID, out[5].ID)
	}
	want := map[model.SubjectRef][]string{alice: {"second"}, bob: {"b1", "b2"}, carol: {"k2"}}
	for ref, refs := range want {
		got, err := s.Subject(cache.ForAdmin(ctx), ref)
		if err != nil {
			t.Fatal(err)
		}
		var have []string
		for _, e := range got.Evidence {
			have = append(have, e.Reference)
		}
		slices.Sort(have)
		if !slices.Equal(have, refs) {
			t.Errorf("%v holds %q, want %q", ref, have, refs)
		}
	}
}
