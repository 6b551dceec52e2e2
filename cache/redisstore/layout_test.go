package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/cache/storetest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/testredis"
	"github.com/gdprgate/gdprgate/policy/model"
)

// changes is INFO's rdb_changes_since_last_save summed over addrs: every
// write Redis executes counts, whatever the key.
func changes(t *testing.T, addrs ...string) int64 {
	t.Helper()
	var n int64
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		info, err := c.Info(context.Background(), "persistence").Result()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "rdb_changes_since_last_save:"); ok {
				x, _ := strconv.ParseInt(v, 10, 64)
				n += x
			}
		}
	}
	return n
}

func seededStore(t testing.TB, url string, opts cache.Options) *redisstore.Store {
	t.Helper()
	s := newStore(t, url, opts)
	if _, err := s.SaveRegisters(context.Background(), storetest.Registers(), 0, audit.Entry{Actor: "t", Action: "register.replace"}); err != nil {
		t.Fatal(err)
	}
	return s
}

func contact(i int) model.SubjectRef {
	return model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("c-%d", i)}
}

// TestReadsWriteNothing: the hot path reads — known and unknown subjects,
// misses and hits, one by one and in batches — change nothing in Redis.
func TestReadsWriteNothing(t *testing.T) {
	srv := testredis.Start(t)
	s := seededStore(t, srv.URL(), cache.Options{MaxSubjects: 10})
	ctx := context.Background()
	var evs []model.Evidence
	for i := range 50 {
		evs = append(evs, model.Evidence{Subject: contact(i), LegalisationID: "contract-care", Origin: storetest.T0})
	}
	if _, err := s.PutEvidence(ctx, evs, audit.Entry{Actor: "t", Action: "evidence.import"}); err != nil {
		t.Fatal(err)
	}
	before := changes(t, srv.Addr())
	// Twice as many subjects as the cache holds: most reads miss.
	var refs []model.SubjectRef
	for i := range 100 {
		refs = append(refs, contact(i))
		if _, err := s.Facts(ctx, contact(i), storetest.T0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Subject(ctx, contact(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.FactsMany(ctx, refs, storetest.T0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshots(ctx, refs); err != nil {
		t.Fatal(err)
	}
	if after := changes(t, srv.Addr()); after != before {
		t.Fatalf("reads made %d writes in Redis", after-before)
	}
}

// TestSubjectsSpreadOverMasters: on a cluster, subjects — and so their
// writes — land on every master in even shares.
func TestSubjectsSpreadOverMasters(t *testing.T) {
	c := cluster.Get(t)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	s := seededStore(t, c.URL(), cache.Options{Timeout: 10 * time.Second})
	ctx := context.Background()
	var evs []model.Evidence
	for i := range 3000 {
		evs = append(evs, model.Evidence{Subject: contact(i), LegalisationID: "contract-care", Origin: storetest.T0})
	}
	masters := c.Masters()
	var addrs []string
	for _, m := range masters {
		addrs = append(addrs, m.Addr())
	}
	var before []int64
	for _, a := range addrs {
		before = append(before, changes(t, a))
	}
	if _, err := s.PutEvidence(ctx, evs, audit.Entry{Actor: "t", Action: "evidence.import"}); err != nil {
		t.Fatal(err)
	}
	var total int64
	share := make([]int64, len(addrs))
	for i, a := range addrs {
		share[i] = changes(t, a) - before[i]
		total += share[i]
	}
	for i, n := range share {
		if f := float64(n) / float64(total); f < 0.25 || f > 0.42 {
			t.Fatalf("master %d took %d of %d writes (%.0f%%); want about a third each", i, n, total, 100*f)
		}
	}
	// And each subject reads back.
	fs, err := s.FactsMany(ctx, []model.SubjectRef{contact(0), contact(1500), contact(2999)}, storetest.T0)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if !f.Known || f.State.Covered == 0 {
			t.Fatalf("imported subject read back as %+v", f)
		}
	}
}

// TestLargeRecordsOverflowAndShrinkBack: a subject with many records moves
// out of its bucket into its own key and back, reading the same.
func TestLargeRecordsOverflowAndShrinkBack(t *testing.T) {
	srv := testredis.Start(t)
	s := seededStore(t, srv.URL(), cache.Options{})
	ctx := context.Background()
	ref := contact(1)
	var evs []model.Evidence
	for i := range 6 {
		evs = append(evs, model.Evidence{Subject: ref, LegalisationID: "marketing-consent", EvidenceKey: "web-" + strconv.Itoa(i), Reference: strings.Repeat("r", 20), Origin: storetest.T0})
	}
	out, err := s.PutEvidence(ctx, evs, audit.Entry{Actor: "t", Action: "evidence.import"})
	if err != nil {
		t.Fatal(err)
	}
	keys := func() []string {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer c.Close()
		ks, err := c.Keys(ctx, "gdprgate:*:o:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	if ks := keys(); len(ks) != 1 {
		t.Fatalf("overflow keys %q, want the large record's", ks)
	}
	if rec, err := s.Subject(ctx, ref); err != nil || len(rec.Evidence) != 6 {
		t.Fatalf("large record = %+v, %v", rec, err)
	}
	for _, ev := range out[1:] {
		if err := s.RevokeEvidence(ctx, ref, ev.ID, audit.Entry{Actor: "t", Action: "evidence.revoke"}); err != nil {
			t.Fatal(err)
		}
	}
	if ks := keys(); len(ks) != 0 {
		t.Fatalf("overflow keys %q left after the record shrank", ks)
	}
	if rec, err := s.Subject(ctx, ref); err != nil || len(rec.Evidence) != 1 || rec.Evidence[0].ID != out[0].ID {
		t.Fatalf("shrunk record = %+v, %v", rec, err)
	}
}

// TestEvidenceKeyHeldByAnotherWriterWaits: a key claimed for another
// subject by a writer still at work (or dead) is a conflict until the
// claim is old enough to be taken over.
func TestEvidenceKeyHeldByAnotherWriterWaits(t *testing.T) {
	srv := testredis.Start(t)
	var clock atomic.Int64
	clock.Store(storetest.T0.UnixNano())
	s := seededStore(t, srv.URL(), cache.Options{Clock: func() time.Time { return time.Unix(0, clock.Load()) }})
	ctx := context.Background()
	e := audit.Entry{Actor: "t", Action: "evidence.import"}
	if _, err := s.PutEvidence(ctx, []model.Evidence{{Subject: contact(1), LegalisationID: "marketing-consent", EvidenceKey: "k", Origin: storetest.T0}}, e); err != nil {
		t.Fatal(err)
	}
	// A writer that claimed the key for contact 2 and died before writing.
	redisstore.ClaimForTest(t, s, "marketing-consent", "k", contact(2))
	move := []model.Evidence{{Subject: contact(3), LegalisationID: "marketing-consent", EvidenceKey: "k", Origin: storetest.T0}}
	if _, err := s.PutEvidence(ctx, move, e); !errors.Is(err, cache.ErrConflict) {
		t.Fatalf("moving a freshly claimed key err = %v, want ErrConflict", err)
	}
	if rec, _ := s.Subject(ctx, contact(1)); len(rec.Evidence) != 1 {
		t.Fatalf("the refused move changed the old subject: %+v", rec)
	}
	clock.Add(int64(time.Hour)) // past the takeover age (it grows with the store's timeouts)
	out, err := s.PutEvidence(ctx, move, e)
	if err != nil {
		t.Fatalf("moving the key after the claim expired: %v", err)
	}
	for i, want := range []int{0, 0, 1} {
		if rec, _ := s.Subject(ctx, contact(i+1)); len(rec.Evidence) != want {
			t.Fatalf("contact %d holds %d records, want %d", i+1, len(rec.Evidence), want)
		}
	}
	if got, err := s.EvidenceByKey(ctx, "marketing-consent", "k"); err != nil || got.ID != out[0].ID || got.Subject != contact(3) {
		t.Fatalf("EvidenceByKey = %+v, %v", got, err)
	}
}

func TestOldLayoutIsRefused(t *testing.T) {
	srv := testredis.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.Set(context.Background(), "gdprgate:{g}:epoch", 7, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := redisstore.New(context.Background(), srv.URL(), generous(cache.Options{})); !errors.Is(err, redisstore.ErrOldLayout) {
		t.Fatalf("New on a layout-1 store err = %v, want ErrOldLayout", err)
	}
}

// TestFailedBatchIsRolledBack freezes one master of a cluster while a batch
// over every tag is written: the batch fails, the parts written on the
// other masters are rolled back, and the frozen master, thawed after the
// write's deadline, does not apply its part late.
func TestFailedBatchIsRolledBack(t *testing.T) {
	// A node timeout longer than the freeze: no failover, the frozen master
	// comes back as the master with the write in its socket buffer.
	c := testredis.StartClusterWith(t, testredis.ClusterOptions{NodeTimeout: 15 * time.Second})
	s := seededStore(t, c.URL(), cache.Options{Timeout: time.Second, WriteTimeout: time.Second})
	ctx := context.Background()
	var evs []model.Evidence
	var refs []model.SubjectRef
	for i := range 2000 {
		refs = append(refs, contact(i))
		evs = append(evs, model.Evidence{Subject: contact(i), LegalisationID: "contract-care", Origin: storetest.T0})
	}
	// Everything the store needs from the global slot is loaded first.
	first, err := s.PutEvidence(ctx, evs[:1], audit.Entry{Actor: "t", Action: "evidence.import"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeEvidence(ctx, contact(0), first[0].ID, audit.Entry{Actor: "t", Action: "evidence.revoke"}); err != nil {
		t.Fatal(err)
	}
	victim := c.Masters()[0]
	if victim.Addr() == redisstore.GlobalMasterForTest(t, s) {
		victim = c.Masters()[1]
	}
	// Frozen after the batch's records were read, before they are written.
	var once atomic.Bool
	redisstore.BeforeWriteForTest(s, func() {
		if once.CompareAndSwap(false, true) {
			victim.Stop()
		}
	})
	_, err = s.PutEvidence(ctx, evs, audit.Entry{Actor: "t", Action: "evidence.import"})
	time.Sleep(4 * time.Second) // past the write's deadline
	victim.Continue()
	redisstore.BeforeWriteForTest(s, nil)
	if !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("batch with a frozen master err = %v, want ErrUnavailable", err)
	}
	if werr := c.WaitHealthy(60 * time.Second); werr != nil {
		t.Fatal(werr)
	}
	var stored int
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored = 0
		snaps, rerr := s.Snapshots(ctx, refs)
		if rerr == nil {
			for _, sn := range snaps {
				stored += len(sn.Record.Evidence)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(rerr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if stored != 0 {
		t.Fatalf("%d records of a failed batch remain", stored)
	}
	es, _, err := s.Audit(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	written, undone := 0, 0
	for _, e := range es {
		switch e.Action {
		case "evidence.import":
			written++
		case "evidence.import.rollback":
			undone++
		}
	}
	// The first import and its revoke aside, every part written has its
	// rollback entry.
	if undone == 0 {
		t.Log("no part was written before the failure (a slow run): nothing to roll back")
	}
	if written-1 != undone {
		t.Fatalf("audit: %d import parts, %d rollbacks; every part of the failed batch written must be rolled back", written-1, undone)
	}
}
