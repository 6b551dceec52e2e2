package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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
//
// With the records as read (Due's tokens), a record changed with its score
// kept (a restriction is written so) is still moved, its change kept.
func TestCommitSweepLeavesOutOnlyTheSubjectWrittenMeanwhile(t *testing.T) {
	for _, tc := range []struct {
		name            string
		applied, tokens bool
	}{{"score only", false, false}, {"score only, records as read", false, true}, {"applied state changed", true, false}} {
		t.Run(tc.name, func(t *testing.T) { testCommitSweepConflict(t, tc.applied, tc.tokens) })
	}
}

func testCommitSweepConflict(t *testing.T, applied, tokens bool) {
	srv := testredis.Start(t)
	s := newStore(t, srv.URL(), cache.Options{})
	// A bound against a hang, not a speed check: 1,200 writes under -race on
	// a loaded CI machine took more than the minute this once was.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := storetest.T0
	e := audit.Entry{Actor: "tester", Action: "test", Object: "test", Time: t0}
	if _, err := s.SaveRegisters(ctx, storetest.Registers(), 0, e); err != nil {
		t.Fatal(err)
	}
	// Enough subjects that the victim's tag holds others too, written by a
	// few writers at once (each write is round trips, not CPU).
	byTag := map[int][]model.SubjectRef{}
	refs := make([]model.SubjectRef, 1200)
	for i := range refs {
		refs[i] = model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("c-%d", i)}
		byTag[redisstore.TagForTest(refs[i])] = append(byTag[redisstore.TagForTest(refs[i])], refs[i])
	}
	const writers = 8
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := w; i < len(refs); i += writers {
				if err := s.PutSubject(ctx, model.Subject{Ref: refs[i], Origin: t0.Add(-10 * 24 * time.Hour)}, e); err != nil {
					errs <- fmt.Errorf("put %s: %w", refs[i].ID, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
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
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	// The keeper (another tag) is changed after the read with its score
	// kept, its bucket's score restored.
	var keeper model.SubjectRef
	var kept string
	if tokens {
		for tag, refs := range byTag {
			if tag != redisstore.TagForTest(victim) {
				keeper = refs[0]
				break
			}
		}
		key, f := redisstore.RecordKeyForTest(t, s, keeper)
		due, bucket := redisstore.DueKeyForTest(redisstore.TagForTest(keeper)), key[strings.LastIndex(key, ":")+1:]
		v1, err1 := rc.HGet(ctx, key, f).Result()
		sc, err2 := rc.ZScore(ctx, due, bucket).Result()
		if err := s.PutSubject(ctx, model.Subject{Ref: keeper, Origin: t0.Add(-5 * 24 * time.Hour)}, e); err != nil || err1 != nil || err2 != nil {
			t.Fatal(err, err1, err2)
		}
		v2, err := rc.HGet(ctx, key, f).Result()
		if err != nil || v2[6:] == v1[6:] {
			t.Fatalf("the keeper's record did not change: %v", err)
		}
		kept = v1[:6] + v2[6:]
		if err := rc.HSet(ctx, key, f, kept).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rc.ZAdd(ctx, due, redis.Z{Score: sc, Member: bucket}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	next := cache.DueScore(t0.Add(20 * 24 * time.Hour))
	us := make([]cache.SweepUpdate, len(ds))
	for i, d := range ds {
		us[i] = cache.SweepUpdate{Ref: d.Ref, Expect: d.Score, Next: next}
		if tokens {
			if d.Token == "" {
				t.Fatalf("%s: Due gave no token", d.Ref.ID)
			}
			us[i].Token = d.Token
		}
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
	if tokens {
		rec, err := s.Subject(ctx, keeper)
		if err != nil || !rec.Subject.Origin.Equal(t0.Add(-5*24*time.Hour)) {
			t.Fatalf("the keeper = %+v, %v: its change made meanwhile is lost", rec.Subject, err)
		}
		key, f := redisstore.RecordKeyForTest(t, s, keeper)
		if v, err := rc.HGet(ctx, key, f).Result(); err != nil || v[6:] != kept[6:] || v[:6] == kept[:6] {
			t.Fatalf("the keeper's record %q, %v: want its body as changed with a new score", v, err)
		}
	}
	// Moving scores alone, every bucket but the victim's left the due
	// range in the commit itself (not lazily, by a later Due finding it
	// stale; a rewrite of the applied state leaves that to Due).
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

// The due index's shards hold disjoint subjects that together are every
// due subject; each shard's read honours its limit.
func TestDueShardsSplitTheDueSubjects(t *testing.T) {
	srv := testredis.Start(t)
	s := newStore(t, srv.URL(), cache.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := storetest.T0
	e := audit.Entry{Actor: "tester", Action: "test", Object: "test", Time: t0}
	if _, err := s.SaveRegisters(ctx, storetest.Registers(), 0, e); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		ref := model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("c-%d", i)}
		if err := s.PutSubject(ctx, model.Subject{Ref: ref, Origin: t0.Add(-10 * 24 * time.Hour)}, e); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Due(ctx, t0, 1000)
	if err != nil || len(all) != 300 {
		t.Fatalf("Due = %d, %v", len(all), err)
	}
	seen := map[model.SubjectRef]int{}
	for shard := range 2 {
		ds, err := s.DueShard(ctx, t0, 1000, shard, 2)
		if err != nil || len(ds) == 0 {
			t.Fatalf("shard %d: %d, %v", shard, len(ds), err)
		}
		for _, d := range ds {
			seen[d.Ref]++
			if redisstore.TagForTest(d.Ref)%2 != shard {
				t.Errorf("%s (tag %d) in shard %d", d.Ref.ID, redisstore.TagForTest(d.Ref), shard)
			}
		}
		if few, err := s.DueShard(ctx, t0, 7, shard, 2); err != nil || len(few) != 7 {
			t.Errorf("shard %d, limit 7: %d, %v", shard, len(few), err)
		}
	}
	for _, d := range all {
		if seen[d.Ref] != 1 {
			t.Errorf("%s read %d times from the shards, want once", d.Ref.ID, seen[d.Ref])
		}
	}
	if len(seen) != 300 {
		t.Errorf("the shards hold %d subjects, want 300", len(seen))
	}
	if _, err := s.DueShard(ctx, t0, 10, 2, 2); err == nil {
		t.Error("shard 2 of 2 accepted")
	}
}
