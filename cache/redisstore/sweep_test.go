package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
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

// CommitSweep writes a batch's subjects of one hash tag in one script. A
// subject written between the sweep's read and that script must fail
// alone: its new record is kept, and the other subjects of its tag are
// still committed — whether the sweep moves the due score alone (patched
// in place) or also the applied state (the record rewritten). Either way
// the due index's bucket scores are raised at once: afterwards only the
// victim's bucket is still due.
func TestCommitSweepLeavesOutOnlyTheSubjectWrittenMeanwhile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		applied bool
	}{{"score only", false}, {"applied state changed", true}} {
		t.Run(tc.name, func(t *testing.T) { testCommitSweepConflict(t, tc.applied) })
	}
}

func testCommitSweepConflict(t *testing.T, applied bool) {
	srv := testredis.Start(t)
	s := newStore(t, srv.URL(), cache.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := storetest.T0
	e := audit.Entry{Actor: "tester", Action: "test", Object: "test", Time: t0}
	if _, err := s.SaveRegisters(ctx, storetest.Registers(), 0, e); err != nil {
		t.Fatal(err)
	}
	// Enough subjects that the victim's tag holds others too.
	byTag := map[int][]model.SubjectRef{}
	for i := range 1200 {
		ref := model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("c-%d", i)}
		if err := s.PutSubject(ctx, model.Subject{Ref: ref, Origin: t0.Add(-10 * 24 * time.Hour)}, e); err != nil {
			t.Fatal(err)
		}
		byTag[redisstore.TagForTest(ref)] = append(byTag[redisstore.TagForTest(ref)], ref)
	}
	// While more are due than asked for, Due returns as many as asked
	// (the sweeper ends its pass on a short answer).
	for _, limit := range []int{1, 7, 1000, 1199} {
		ds, err := s.Due(ctx, t0, limit)
		seen := map[model.SubjectRef]bool{}
		for _, d := range ds {
			seen[d.Ref] = true
		}
		if err != nil || len(ds) != limit || len(seen) != limit {
			t.Fatalf("Due(limit %d) = %d (%d distinct), %v", limit, len(ds), len(seen), err)
		}
	}
	ds, err := s.Due(ctx, t0, 5000)
	if err != nil || len(ds) != 1200 {
		t.Fatalf("Due = %d, %v; want every subject", len(ds), err)
	}
	var victim model.SubjectRef
	for _, refs := range byTag {
		if len(refs) >= 3 {
			victim = refs[1]
			break
		}
	}
	next := cache.DueScore(t0.Add(20 * 24 * time.Hour))
	us := make([]cache.SweepUpdate, len(ds))
	for i, d := range ds {
		us[i] = cache.SweepUpdate{Ref: d.Ref, Expect: d.Score, Next: next}
		if applied {
			us[i].Applied, us[i].AppliedChanged = cache.Applied{Obliviated: 0b1000, Round: 1}, true
		}
	}
	written := false
	redisstore.BeforeWriteForTest(s, func() {
		if written {
			return
		}
		written = true
		ev := model.Evidence{Subject: victim, LegalisationID: "contract-care", Origin: t0.Add(-10 * 24 * time.Hour), CreatedBy: "test"}
		if _, err := s.PutEvidence(ctx, []model.Evidence{ev}, e); err != nil {
			t.Error(err)
		}
	})
	ok, err := s.CommitSweep(ctx, us)
	redisstore.BeforeWriteForTest(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range us {
		if want := u.Ref != victim; ok[i] != want {
			t.Errorf("%s: committed %v, want %v", u.Ref.ID, ok[i], want)
		}
	}
	rec, err := s.Subject(ctx, victim)
	if err != nil || len(rec.Evidence) != 1 {
		t.Fatalf("the victim's evidence = %+v, %v: the sweep overwrote the write made meanwhile", rec.Evidence, err)
	}
	snaps, err := s.Snapshots(ctx, byTag[redisstore.TagForTest(victim)])
	if err != nil {
		t.Fatal(err)
	}
	for i, sn := range snaps {
		ref := byTag[redisstore.TagForTest(victim)][i]
		if want := (ref != victim) && applied; (sn.Applied.Round == 1) != want {
			t.Errorf("%s (the victim's tag): applied %+v", ref.ID, sn.Applied)
		}
	}
	// Moving scores alone, every bucket but the victim's left the due
	// range in the commit itself (not lazily, by a later Due finding it
	// stale; a rewrite of the applied state leaves that to Due).
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	stale := int64(0)
	for tag := range 256 {
		n, err := rc.ZCount(ctx, redisstore.DueKeyForTest(tag), "-inf", strconv.FormatInt(t0.UnixMilli(), 10)).Result()
		if err != nil {
			t.Fatal(err)
		}
		stale += n
	}
	if !applied && stale != 1 {
		t.Errorf("%d buckets still scored due after the commit, want 1 (the victim's)", stale)
	}
	ds, err = s.Due(ctx, t0, 5000)
	if err != nil || len(ds) != 1 || ds[0].Ref != victim {
		t.Fatalf("Due after the commit = %+v, %v; want the victim alone", ds, err)
	}
}
