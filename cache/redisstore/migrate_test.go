package redisstore_test

import (
	"context"
	"encoding/json"
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

// v1Store writes a store in key layout 1 (everything under {g}) exactly as
// gdprgate wrote it before sharding.
func v1Store(t *testing.T, addr string) {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	regs, _ := json.Marshal(storetest.Registers())
	p := c.Pipeline()
	p.HSet(ctx, "gdprgate:{g}:registers", "version", 3, "data", regs)
	p.Set(ctx, "gdprgate:{g}:epoch", 17, 0)
	for _, e := range []string{"register.replace", "evidence.create", "wipe.request"} {
		b, _ := json.Marshal(audit.Entry{Actor: "old", Action: e, Time: storetest.T0})
		p.XAdd(ctx, &redis.XAddArgs{Stream: "gdprgate:{g}:audit", Values: []any{"e", b}})
	}
	s := func(id, suffix string) string { return "gdprgate:{g}:s:7:contact:" + id + ":" + suffix }
	ph := "gdprgate:{g}:s:12:phone_number:+420123:"
	alice := model.SubjectRef{Entity: "contact", ID: "c-1"}
	meta, _ := json.Marshal(model.Subject{Ref: alice, Origin: storetest.T0.AddDate(0, 0, -100)})
	p.Set(ctx, s("c-1", "meta"), meta, 0)
	ev1, _ := json.Marshal(model.Evidence{ID: "ev-0123456789abcdef", Subject: alice, LegalisationID: "marketing-consent", EvidenceKey: "web-1", Origin: storetest.T0.AddDate(0, 0, -10), CreatedBy: "import"})
	ev2, _ := json.Marshal(model.Evidence{ID: "ev-custom", Subject: alice, LegalisationID: "contract-care", Origin: storetest.T0.AddDate(0, 0, -10)})
	p.HSet(ctx, s("c-1", "evidence"), "ev-0123456789abcdef", ev1, "ev-custom", ev2)
	p.SAdd(ctx, s("c-1", "children"), "12:phone_number:+420123")
	p.Set(ctx, s("c-1", "swept"), "8:2", 0)
	pmeta, _ := json.Marshal(model.Subject{Ref: model.SubjectRef{Entity: "phone_number", ID: "+420123"}, Origin: storetest.T0.AddDate(0, 0, -40), Parent: &alice})
	p.Set(ctx, ph+"meta", pmeta, 0)
	p.Set(ctx, s("c-2", "seen"), "s "+storetest.T0.AddDate(0, 0, -5).Format(time.RFC3339Nano), 0)
	p.Set(ctx, s("c-2", "restriction"), "w-1", 0)
	p.Set(ctx, s("c-3", "seen"), storetest.T0.AddDate(0, 0, -3).Format(time.RFC3339Nano), 0) // bare: observed
	loc, _ := json.Marshal(map[string]string{"entity": "contact", "id": "c-1", "ev": "ev-0123456789abcdef"})
	p.HSet(ctx, "gdprgate:{g}:evkey", "marketing-consent\x00web-1", loc)
	p.ZAdd(ctx, "gdprgate:{g}:due", redis.Z{Score: -5, Member: "7:contact:c-1"}, redis.Z{Score: float64(storetest.T0.UnixMilli()), Member: "7:contact:c-2"})
	w, _ := json.Marshal(cache.WipeRecord{ID: "w-1", Subject: model.SubjectRef{Entity: "contact", ID: "c-2"}, Status: cache.WipeQueued, CreatedAt: storetest.T0})
	p.Set(ctx, "gdprgate:{g}:wipe:w-1", w, 0)
	p.ZAdd(ctx, "gdprgate:{g}:wipes", redis.Z{Score: float64(storetest.T0.UnixNano()), Member: "w-1"})
	p.XGroupCreateMkStream(ctx, "gdprgate:{g}:wipeq", "workers", "0")
	p.XAdd(ctx, &redis.XAddArgs{Stream: "gdprgate:{g}:wipeq", Values: []any{"wipe", "w-1"}})
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

// checkMigrated reads a migrated store through the Store interface.
func checkMigrated(t *testing.T, s *redisstore.Store) {
	t.Helper()
	ctx := context.Background()
	alice := model.SubjectRef{Entity: "contact", ID: "c-1"}
	phone := model.SubjectRef{Entity: "phone_number", ID: "+420123"}
	ix, err := s.Registers(ctx)
	if err != nil || ix.Version != 3 {
		t.Fatalf("registers after migration: %+v, %v", ix, err)
	}
	rec, err := s.Subject(ctx, alice)
	if err != nil || !rec.Known || len(rec.Evidence) != 2 || !rec.Subject.Origin.Equal(storetest.T0.AddDate(0, 0, -100)) || rec.Evidence[0].CreatedBy != "import" {
		t.Fatalf("alice after migration = %+v, %v", rec, err)
	}
	if cs, _ := s.Children(ctx, alice); len(cs) != 1 || cs[0] != phone {
		t.Fatalf("children = %v", cs)
	}
	snaps, err := s.Snapshots(ctx, []model.SubjectRef{phone, alice, {Entity: "contact", ID: "c-2"}, {Entity: "contact", ID: "c-3"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps[0].Inherited) != 2 || snaps[0].Origin != cache.OriginSet {
		t.Fatalf("phone = %+v", snaps[0])
	}
	if snaps[1].Applied != (cache.Applied{Obliviated: 8, Round: 2}) {
		t.Fatalf("alice applied = %+v", snaps[1].Applied)
	}
	if snaps[2].Record.Restriction != "w-1" || snaps[2].Origin != cache.OriginStated || snaps[3].Origin != cache.OriginObserved {
		t.Fatalf("c-2, c-3 = %+v, %+v", snaps[2], snaps[3])
	}
	if ev, err := s.EvidenceByKey(ctx, "marketing-consent", "web-1"); err != nil || ev.ID != "ev-0123456789abcdef" {
		t.Fatalf("EvidenceByKey = %+v, %v", ev, err)
	}
	if n, _ := s.EvidenceCounts(ctx); n["contract-care"] != 1 || n["marketing-consent"] != 1 {
		t.Fatalf("evidence counts = %v", n)
	}
	if ds, err := s.Due(ctx, storetest.T0, 10); err != nil || len(ds) != 2 || ds[0].Ref != alice || !ds[0].Marked() {
		t.Fatalf("due after migration = %+v, %v", ds, err)
	}
	if w, err := s.Wipe(ctx, "w-1"); err != nil || w.Subject.ID != "c-2" {
		t.Fatalf("wipe = %+v, %v", w, err)
	}
	if c, err := s.ClaimWipe(ctx, "worker", time.Hour, 0); err != nil || c.WipeID != "w-1" {
		t.Fatalf("queued wipe after migration: %+v, %v", c, err)
	}
	es, _, err := s.Audit(ctx, "", 0)
	if err != nil || len(es) != 4 || es[0].Action != "register.replace" || es[3].Action != "store.migrate" || es[3].Detail["subjects"] != "4" {
		t.Fatalf("audit after migration = %+v, %v", es, err)
	}
	if f, err := s.Facts(ctx, phone, storetest.T0); err != nil || !f.Known || f.State.CoveredInherited == 0 {
		t.Fatalf("facts of the phone = %+v, %v", f, err)
	}
}

func TestMigrateLayout1InPlace(t *testing.T) {
	srv := testredis.Start(t)
	v1Store(t, srv.Addr())
	if _, err := redisstore.New(context.Background(), srv.URL(), generous(cache.Options{})); err == nil {
		t.Fatal("a layout 1 store opened without migration")
	}
	rep, err := redisstore.Migrate(context.Background(), srv.URL(), srv.URL(), redisstore.MigrateOptions{DeleteOld: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Subjects != 4 || rep.Evidence != 2 || rep.KeyIndex != 1 || rep.OldDeleted < 6 {
		t.Fatalf("report %+v", rep)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	if ks, _ := c.Keys(context.Background(), "gdprgate:{g}:s:*").Result(); len(ks) != 0 {
		t.Fatalf("layout 1 keys left: %q", ks)
	}
	checkMigrated(t, newStore(t, srv.URL(), cache.Options{}))
	// Run again: nothing left to convert, nothing lost.
	if _, err := redisstore.Migrate(context.Background(), srv.URL(), srv.URL(), redisstore.MigrateOptions{}); err == nil || !strings.Contains(err.Error(), "already has layout 2") {
		t.Fatalf("second in-place migration err = %v", err)
	}
}

func TestMigrateIntoAClusterWithOtherBuckets(t *testing.T) {
	srv := testredis.Start(t)
	v1Store(t, srv.Addr())
	// Layout 1 → a second single server (layout 2), then → the cluster
	// with another bucket count.
	mid := testredis.Start(t)
	if _, err := redisstore.Migrate(context.Background(), srv.URL(), mid.URL(), redisstore.MigrateOptions{Buckets: 8}); err != nil {
		t.Fatal(err)
	}
	c := cluster.Get(t)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	rep, err := redisstore.Migrate(context.Background(), mid.URL(), c.URL(), redisstore.MigrateOptions{Buckets: 64})
	if err != nil {
		t.Fatal(err)
	}
	if rep.FromLayout != "2" || rep.Buckets != 64 || rep.Subjects != 4 {
		t.Fatalf("report %+v", rep)
	}
	s := newStore(t, c.URL(), cache.Options{})
	if s.Buckets() != 64 {
		t.Fatalf("buckets %d", s.Buckets())
	}
	// The first migration's own audit entry came along.
	es, _, _ := s.Audit(context.Background(), "", 0)
	if len(es) != 5 {
		t.Fatalf("audit = %+v", es)
	}
	if _, err := redisstore.Migrate(context.Background(), mid.URL(), c.URL(), redisstore.MigrateOptions{}); err == nil {
		t.Fatal("a migration into a non-empty target was accepted")
	}
}
