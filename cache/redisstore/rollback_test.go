package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/cache/storetest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/testlog"
	"github.com/gdprgate/gdprgate/internal/testredis"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestBatchWhoseRollbackFailsLeavesOnlyAuditedParts: a batch spanning the
// three masters of a cluster fails on master B (its writes are paused past
// the batch's deadline, so its part is refused when it arrives), is
// rolled back on master C, and cannot be rolled back on master A (paused
// after it wrote its part). The caller gets an error and the log says
// which write was left; nothing accepted before is lost; what stays of the
// failed batch is exactly A's parts, each with its audit entry; C's parts
// are gone with a rollback entry each; B has nothing of it.
func TestBatchWhoseRollbackFailsLeavesOnlyAuditedParts(t *testing.T) {
	if testing.Short() {
		t.Skip("pauses masters for ~20 s")
	}
	cl := testredis.StartClusterWith(t, testredis.ClusterOptions{Masters: 3, Replicas: -1, NodeTimeout: 20 * time.Second})
	logs := &testlog.Buffer{}
	const writeTimeout = 3 * time.Second
	s := seededStore(t, cl.URL(), cache.Options{Timeout: time.Second, WriteTimeout: writeTimeout,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{cl.Masters()[0].Addr()}})
	defer cc.Close()
	masterOf := func(tag int) string {
		n, err := cc.MasterForKey(ctx, redisstore.DueKeyForTest(tag))
		if err != nil {
			t.Fatal(err)
		}
		return n.Options().Addr
	}
	// A and B are not the master of the global keys (symbols, registers):
	// pausing them must not stop the batch before its records.
	global := redisstore.GlobalMasterForTest(t, s)
	var a, b, c string
	for _, m := range cl.Masters() {
		switch {
		case m.Addr() == global:
			c = m.Addr()
		case a == "":
			a = m.Addr()
		default:
			b = m.Addr()
		}
	}
	batch := func(actor string, from, n int) ([]model.Evidence, error) {
		var evs []model.Evidence
		for i := from; i < from+n; i++ {
			evs = append(evs, model.Evidence{Subject: model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("r-%d", i)},
				LegalisationID: "contract-care", Origin: storetest.T0, Reference: actor})
		}
		_, err := s.PutEvidence(ctx, evs, audit.Entry{Actor: actor, Action: "evidence.import"})
		return evs, err
	}
	accepted, err := batch("accepted", 0, 900)
	if err != nil {
		t.Fatal(err)
	}

	nodes := map[string]*redis.Client{}
	for _, m := range cl.Masters() {
		nodes[m.Addr()] = redis.NewClient(&redis.Options{Addr: m.Addr()})
		defer nodes[m.Addr()].Close()
	}
	failing := make([]model.Evidence, 0, 900)
	for i := 900; i < 1800; i++ {
		failing = append(failing, model.Evidence{Subject: model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("r-%d", i)}})
	}
	onA := func() []model.SubjectRef {
		var out []model.SubjectRef
		for _, ev := range failing {
			if masterOf(redisstore.TagForTest(ev.Subject)) == a {
				out = append(out, ev.Subject)
			}
		}
		return out
	}()
	// B refuses writes until well after the batch's deadline (the write
	// timeout plus 1 ms per record, then the script's own margin of the
	// store timeout plus 1 s): its part, when it runs, finds it too late.
	if err := nodes[b].Do(ctx, "client", "pause", 12000, "write").Err(); err != nil {
		t.Fatal(err)
	}
	var keysOnA [][2]string
	for _, ref := range onA {
		bk, f := redisstore.RecordKeyForTest(t, s, ref)
		keysOnA = append(keysOnA, [2]string{bk, f})
	}
	// Once A has written all its part, A stops answering for longer than
	// the rollback may take (4 × the write timeout).
	paused := make(chan error, 1)
	redisstore.BeforeWriteForTest(s, func() {
		redisstore.BeforeWriteForTest(s, nil)
		go func() {
			deadline := time.Now().Add(writeTimeout)
			for time.Now().Before(deadline) {
				all := true
				for _, k := range keysOnA {
					if ok, err := nodes[a].HExists(ctx, k[0], k[1]).Result(); err != nil || !ok {
						all = false
						break
					}
				}
				if all {
					paused <- nodes[a].Do(ctx, "client", "pause", 20000, "all").Err()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			paused <- fmt.Errorf("master A did not write its part within %s", writeTimeout)
		}()
	})
	_, err = batch("failing", 900, 900)
	if err == nil {
		t.Fatal("the batch succeeded with master B refusing writes")
	}
	if perr := <-paused; perr != nil {
		t.Fatal(perr)
	}
	if !strings.Contains(logs.String(), "could not be rolled back on one master") {
		t.Errorf("no log line names the part left unrolled-back; logs:\n%s", logs.String())
	}
	// Wait for the pauses to end (a script waits out both kinds).
	for _, n := range nodes {
		for {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			err := n.Eval(pctx, "return 1", nil).Err()
			cancel()
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	admin := cache.ForAdmin(ctx)
	for _, ev := range accepted {
		rec, err := s.Subject(admin, ev.Subject)
		if err != nil || len(rec.Evidence) != 1 || rec.Evidence[0].Reference != "accepted" {
			t.Fatalf("accepted %v lost: %+v, %v", ev.Subject, rec, err)
		}
	}
	byMaster := map[string]int{}
	entries := map[int][]string{} // tag -> actions of the failing batch
	for _, ev := range failing {
		tag := redisstore.TagForTest(ev.Subject)
		m := masterOf(tag)
		rec, err := s.Subject(admin, ev.Subject)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(rec.Evidence) == 1, m == a; got != want {
			t.Errorf("%v on master %s: %d evidence records after the failed batch (A=%s keeps its parts, B and C none)", ev.Subject, m, len(rec.Evidence), a)
		}
		byMaster[m]++
		if _, ok := entries[tag]; ok {
			continue
		}
		key := strings.TrimSuffix(redisstore.DueKeyForTest(tag), "due") + "audit"
		xs, err := nodes[m].XRange(ctx, key, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		entries[tag] = []string{}
		for _, x := range xs {
			var e audit.Entry
			if err := json.Unmarshal([]byte(x.Values["e"].(string)), &e); err != nil {
				t.Fatal(err)
			}
			if e.Actor == "failing" {
				entries[tag] = append(entries[tag], e.Action)
			}
		}
		want := map[string]string{a: "evidence.import", b: "", c: "evidence.import evidence.import.rollback"}[m]
		if got := strings.Join(entries[tag], " "); got != want {
			t.Errorf("tag %d on master %s: audit entries of the failed batch %q, want %q (A=%s B=%s C=%s)", tag, m, got, want, a, b, c)
		}
	}
	if byMaster[a] == 0 || byMaster[b] == 0 || byMaster[c] == 0 {
		t.Fatalf("the batch does not span the three masters: %v", byMaster)
	}
}
