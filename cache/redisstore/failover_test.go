package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/storetest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/testredis"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestMasterFailoverLosesNoAcknowledgedWrite kills a master of a 3×3
// cluster in the middle of a mixed load — evidence imports and wipes
// through one sidecar acknowledging only replicated writes (WAIT), Checks'
// reads through another — and then checks that every acknowledged evidence
// record and every acknowledged wipe is there, and that the reading
// sidecar never showed a wiped subject unrestricted once the wipe had been
// acknowledged for longer than its invalidation and staleness bounds.
func TestMasterFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	c := testredis.StartCluster3x3(t)
	ctx := context.Background()
	const staleness = 2 * time.Second
	writer := seededStore(t, c.URL(), cache.Options{WaitReplicas: 1, WaitTimeout: 2 * time.Second, Timeout: time.Second, HealthInterval: 100 * time.Millisecond})
	reader := newStore(t, c.URL(), cache.Options{Timeout: time.Second, HealthInterval: 100 * time.Millisecond, MaxStaleness: staleness})
	// The bound after which a read must see an acknowledged wipe: the
	// invalidation (two health intervals) or, cut off, the staleness bound.
	bound := staleness + time.Second

	type ack struct {
		ref model.SubjectRef
		id  string
		at  time.Time
	}
	var (
		mu                 sync.Mutex
		imported, wiped    []ack
		next               atomic.Int64
		stop               atomic.Bool
		wrongAllow, reads  atomic.Int64
		failedW, failedR   atomic.Int64
		wg                 sync.WaitGroup
		firstWrongAllowErr atomic.Value
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				i := next.Add(1)
				ref := model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("f-%d", i)}
				if i%4 == 0 {
					// Wipe a subject imported before.
					mu.Lock()
					if len(imported) == 0 {
						mu.Unlock()
						continue
					}
					victim := imported[int(i)%len(imported)].ref
					mu.Unlock()
					id := fmt.Sprintf("w-%d-%d", w, i)
					err := writer.EnqueueWipe(ctx, cache.WipeRecord{ID: id, Subject: victim, Status: cache.WipeQueued, CreatedAt: time.Now()}, audit.Entry{Actor: "t", Action: "wipe.request"})
					if err != nil {
						failedW.Add(1)
						continue
					}
					mu.Lock()
					wiped = append(wiped, ack{victim, id, time.Now()})
					mu.Unlock()
					continue
				}
				out, err := writer.PutEvidence(ctx, []model.Evidence{{Subject: ref, LegalisationID: "contract-care", Origin: storetest.T0}}, audit.Entry{Actor: "t", Action: "evidence.create"})
				if err != nil {
					failedW.Add(1)
					continue
				}
				mu.Lock()
				imported = append(imported, ack{ref, out[0].ID, time.Now()})
				mu.Unlock()
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; !stop.Load(); k++ {
				mu.Lock()
				if len(wiped) == 0 {
					mu.Unlock()
					time.Sleep(time.Millisecond)
					continue
				}
				a := wiped[k%len(wiped)]
				mu.Unlock()
				// Paced: a spinning reader would starve the cluster on a
				// shared machine without reading anything new.
				time.Sleep(200 * time.Microsecond)
				started := time.Now()
				f, err := reader.Facts(ctx, a.ref, storetest.T0)
				reads.Add(1)
				if err != nil {
					failedR.Add(1) // fail closed: the gate denies
					continue
				}
				if !f.Restricted && started.Sub(a.at) > bound {
					wrongAllow.Add(1)
					firstWrongAllowErr.CompareAndSwap(nil, fmt.Sprintf("%s read unrestricted %s after wipe %s was acknowledged", a.ref.ID, started.Sub(a.at), a.id))
				}
			}
		}()
	}

	time.Sleep(1500 * time.Millisecond)
	// The victim's replica falls behind first (frozen): writes acknowledged
	// on the master's word alone in that window would be lost when the
	// replica takes over. With WAIT they are not acknowledged.
	victim := c.Masters()[0]
	replicas := c.ReplicasOf(victim)
	if len(replicas) != 1 {
		t.Fatalf("victim has %d replicas", len(replicas))
	}
	replicas[0].Stop()
	time.Sleep(time.Second)
	victim.Kill()
	replicas[0].Continue()
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The old master comes back as a replica: writes are acknowledged
	// again once replicated there.
	victim.Restart()
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()

	if n := wrongAllow.Load(); n != 0 {
		t.Fatalf("%d wrong allows in %d reads: %v", n, reads.Load(), firstWrongAllowErr.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("acknowledged: %d imports, %d wipes; refused during the failover: %d writes, %d reads (failed closed); %d reads",
		len(imported), len(wiped), failedW.Load(), failedR.Load(), reads.Load())
	if len(imported) < 10 || len(wiped) < 3 {
		t.Fatalf("too little load to tell: %d imports, %d wipes acknowledged", len(imported), len(wiped))
	}
	// A sidecar started afresh sees every acknowledged write.
	check := newStore(t, c.URL(), cache.Options{Timeout: 5 * time.Second})
	refs := make([]model.SubjectRef, len(imported))
	for i, a := range imported {
		refs[i] = a.ref
	}
	snaps, err := check.Snapshots(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range imported {
		found := false
		for _, ev := range snaps[i].Record.Evidence {
			found = found || ev.ID == a.id
		}
		if !found {
			t.Errorf("acknowledged evidence %s of %s lost", a.id, a.ref.ID)
		}
	}
	for _, a := range wiped {
		w, err := check.Wipe(ctx, a.id)
		if errors.Is(err, cache.ErrNotFound) {
			t.Errorf("acknowledged wipe %s lost", a.id)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		rec, err := check.Subject(ctx, w.Subject)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Restriction == "" {
			t.Errorf("acknowledged wipe %s: %s not restricted", a.id, a.ref.ID)
		}
	}
}
