package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
// still committed.
func TestCommitSweepLeavesOutOnlyTheSubjectWrittenMeanwhile(t *testing.T) {
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
		us[i] = cache.SweepUpdate{Ref: d.Ref, Expect: d.Score, Next: next, Applied: cache.Applied{Obliviated: 0b1000, Round: 1}, AppliedChanged: true}
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
		if want := (ref != victim); (sn.Applied.Round == 1) != want {
			t.Errorf("%s (the victim's tag): applied %+v", ref.ID, sn.Applied)
		}
	}
}
