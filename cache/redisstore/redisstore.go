// Package redisstore is the Redis cache.Store: shared by every sidecar and
// durable (as durable as the Redis deployment: use AOF). Reads go through
// cache.Local, so a warm Facts or Registers call makes no round trip.
//
// # URLs
//
//	redis://[user:pass@]host:port[/db]            one server (go-redis ParseURL options apply)
//	rediss://...                                  the same over TLS
//	unix:///path/to/redis.sock                    a local socket
//	redis-sentinel://[user:pass@]h1:p1,h2:p2/master[?db=N&sentinel_password=..&addr=h3:p3]
//	redis-cluster://[user:pass@]h1:p1,h2:p2[?addr=h3:p3]   (rediss-cluster:// for TLS)
//
// # Key layout
//
// Every key carries the hash tag {g}, so all of gdprgate's keys live in one
// cluster slot. That is deliberate: every write is one MULTI/EXEC together
// with its audit entry, the epoch and, for evidence, the global evidence-key
// index, and Redis Cluster refuses a transaction across slots (CROSSSLOT).
// On a cluster gdprgate's data therefore sits on one shard (with its
// replicas); the sidecars' local caches carry the read load. A subject's
// keys are named s:<len(entity)>:<entity>:<id> (the length keeps the
// encoding unambiguous); below <S> stands for that.
//
//	gdprgate:{g}:registers      hash   version, data (JSON model.Registers)
//	gdprgate:{g}:audit          stream one entry per change, field e = JSON audit.Entry
//	gdprgate:{g}:evkey          hash   "<legalisation>\x00<evidence_key>" → JSON {entity,id,evidence id}
//	gdprgate:{g}:wipe:<id>      string JSON cache.WipeRecord
//	gdprgate:{g}:wipes          zset   wipe ids scored by created_at (unix ns), for listing
//	gdprgate:{g}:wipeq          stream the wipe queue (field wipe = id), consumer group "workers"
//	gdprgate:{g}:epoch          int    incremented by every write, carried by invalidations
//	gdprgate:{g}:<S>:meta       string JSON model.Subject (PutSubject)
//	gdprgate:{g}:<S>:seen       string recorded origin: "o <RFC 3339>" observed, "s <RFC 3339>" stated
//	gdprgate:{g}:<S>:evidence   hash   evidence id → JSON model.Evidence
//	gdprgate:{g}:<S>:restriction string id of the wipe restricting the subject
//	gdprgate:{g}:<S>:children   set    members of the subjects whose parent is <S>
//	gdprgate:{g}:<S>:swept      string applied lifecycle state "<obliviated mask>:<round>"
//	gdprgate:{g}:due            zset   member "<len>:<entity>:<id>" → next transition (unix ms,
//	                                   rounded up); <0 recompute mark, +inf none
//	gdprgate:{g}:duemark        int    numbers recompute marks (INCR; mark = -value)
//	gdprgate:{g}:recompute      hash   version, p (JSON cache.RecomputeProgress)
//	gdprgate:{g}:held           zset   held wipe ids by created_at (unix ns)
//	gdprgate:{g}:guard          zset   admitted deletions by instant (ms), mass-deletion guard
//	gdprgate:{g}:evcount        hash   legalisation id → evidence records naming it
//	gdprgate:{g}:lease:<name>   string lease holder, PX ttl
//	gdprgate:invalidate         pub/sub channel: "<epoch> r <version>" or "<epoch> s <entity>\x00<id>"
//
// # Consistency
//
// Every write is one MULTI/EXEC (with WATCH for compare-and-swap) that also
// appends its audit entry, bumps the epoch and publishes an invalidation,
// so the write, its audit entry and its invalidation happen together or not
// at all. This holds on a single primary (standalone or sentinel). In
// cluster mode a transaction cannot span slots, so writes touching a subject
// and the global audit stream are refused by Redis (CROSSSLOT): cluster
// support is limited to reads until the audit trail is made per-slot.
//
// Sidecars learn of each other's writes from the pub/sub channel; a health
// loop pings every Options.HealthInterval, compares the epoch and register
// version with what it has seen (so a lost message costs at most two
// intervals) and flushes the local cache after any loss of contact.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

const (
	keyRegisters = "gdprgate:{g}:registers"
	keyAudit     = "gdprgate:{g}:audit"
	keyEvKey     = "gdprgate:{g}:evkey"
	keyWipes     = "gdprgate:{g}:wipes"
	keyQueue     = "gdprgate:{g}:wipeq"
	keyEpoch     = "gdprgate:{g}:epoch"
	keyDue       = "gdprgate:{g}:due"
	keyDueMark   = "gdprgate:{g}:duemark"
	keyHeld      = "gdprgate:{g}:held"
	keyGuard     = "gdprgate:{g}:guard"
	keyEvCount   = "gdprgate:{g}:evcount"
	keyRecompute = "gdprgate:{g}:recompute"
	channel      = "gdprgate:invalidate"
	group        = "workers"
)

func keyLease(name string) string { return "gdprgate:{g}:lease:" + name }

func keyWipe(id string) string { return "gdprgate:{g}:wipe:" + id }

func subjectTag(ref model.SubjectRef) string {
	return "gdprgate:{g}:s:" + strconv.Itoa(len(ref.Entity)) + ":" + ref.Entity + ":" + ref.ID + ":"
}

func keyMeta(r model.SubjectRef) string        { return subjectTag(r) + "meta" }
func keySeen(r model.SubjectRef) string        { return subjectTag(r) + "seen" }
func keyEvidence(r model.SubjectRef) string    { return subjectTag(r) + "evidence" }
func keyRestriction(r model.SubjectRef) string { return subjectTag(r) + "restriction" }
func keyChildren(r model.SubjectRef) string    { return subjectTag(r) + "children" }
func keySwept(r model.SubjectRef) string       { return subjectTag(r) + "swept" }

// publishScript bumps the epoch and publishes an invalidation carrying it,
// and marks the subjects given after the message in the due index with a
// fresh recompute mark each (a unique negative score: see cache.Due).
var publishScript = redis.NewScript(`local e = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], e .. ' ' .. ARGV[2])
for i = 3, #ARGV do
  local m = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[3], -m, ARGV[i])
end
return e`)

// Store is the Redis cache.Store.
type Store struct {
	c     redis.UniversalClient
	opts  cache.Options
	local *cache.Local
	log   interface {
		Warn(string, ...any)
		Info(string, ...any)
	}

	// seenEpoch is the highest epoch received on the channel; prevEpoch the
	// store's epoch at the previous health check.
	seenEpoch atomic.Int64
	prevEpoch int64

	cancel context.CancelFunc
	wg     sync.WaitGroup
	pubsub *redis.PubSub
}

var _ cache.Store = (*Store)(nil)

// New connects to the Redis at url (see the package doc for the forms),
// checks it answers, subscribes to invalidations and starts the health loop.
func New(ctx context.Context, url string, opts cache.Options) (*Store, error) {
	opts = opts.WithDefaults()
	c, err := newClient(url, opts.Timeout)
	if err != nil {
		return nil, err
	}
	s := &Store{c: c, opts: opts, local: cache.NewLocal(opts), log: opts.Logger}
	// Fresh means a health check succeeded within the last two intervals
	// (plus one timeout for the check itself).
	s.local.ExpectContactEvery(2*opts.HealthInterval + opts.Timeout)
	pctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		s.local.StopWatchdog()
		_ = c.Close()
		return nil, fmt.Errorf("redis: %w: %v", cache.ErrUnavailable, err)
	}
	if err := s.ensureGroup(pctx); err != nil {
		s.local.StopWatchdog()
		_ = c.Close()
		return nil, err
	}
	if e, err := c.Get(pctx, keyEpoch).Int64(); err == nil {
		s.seenEpoch.Store(e)
		s.prevEpoch = e
	}
	s.pubsub = c.Subscribe(context.Background(), channel)
	if _, err := s.pubsub.Receive(pctx); err != nil {
		s.local.StopWatchdog()
		_ = s.pubsub.Close()
		_ = c.Close()
		return nil, fmt.Errorf("redis subscribe: %w: %v", cache.ErrUnavailable, err)
	}
	bg, stop := context.WithCancel(context.Background())
	s.cancel = stop
	s.wg.Add(2)
	go s.listen(bg)
	go s.health(bg)
	return s, nil
}

// Seed loads a registers file into the store, which must be empty (see
// cache.LoadSeed).
func (s *Store) Seed(ctx context.Context, seed *model.Seed) error {
	return cache.LoadSeed(ctx, s, seed)
}

// Local exposes the read-through cache (metrics, tests).
func (s *Store) Local() *cache.Local { return s.local }

func (s *Store) ensureGroup(ctx context.Context) error {
	err := s.c.XGroupCreateMkStream(ctx, keyQueue, group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return s.fail("create wipe queue group", err)
	}
	return nil
}

// listen applies invalidations published by any sidecar (this one included).
func (s *Store) listen(ctx context.Context) {
	defer s.wg.Done()
	ch := s.pubsub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			s.apply(m.Payload)
		}
	}
}

func (s *Store) apply(payload string) {
	epochStr, rest, _ := strings.Cut(payload, " ")
	kind, arg, _ := strings.Cut(rest, " ")
	switch kind {
	case "r":
		if v, err := strconv.ParseInt(arg, 10, 64); err != nil || s.local.Index() == nil || s.local.Index().Version != v {
			s.local.DropIndex()
		}
	case "s":
		entity, id, _ := strings.Cut(arg, "\x00")
		s.local.Invalidate(model.SubjectRef{Entity: entity, ID: id})
	default:
		s.local.InvalidateAll()
	}
	if e, err := strconv.ParseInt(epochStr, 10, 64); err == nil {
		for {
			old := s.seenEpoch.Load()
			if e <= old || s.seenEpoch.CompareAndSwap(old, e) {
				break
			}
		}
	}
}

// health pings Redis, tracks contact for the staleness bound and catches
// invalidations the channel lost.
func (s *Store) health(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.check(ctx)
	}
}

func (s *Store) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	p := s.c.Pipeline()
	epochCmd := p.Get(cctx, keyEpoch)
	verCmd := p.HGet(cctx, keyRegisters, "version")
	_, err := p.Exec(cctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		if ctx.Err() == nil && s.local.Connected() {
			s.log.Warn("redis unreachable; serving cached facts within the staleness bound", "err", err)
		}
		s.local.MarkDisconnected()
		return
	}
	epoch, _ := epochCmd.Int64()
	version, _ := verCmd.Int64()
	if !s.local.Connected() {
		// Invalidations may have been missed while away: start afresh.
		s.log.Info("redis reachable again; local cache flushed")
		s.local.DropIndex()
		s.seenEpoch.Store(epoch)
	} else {
		if ix := s.local.Index(); ix != nil && ix.Version != version {
			s.local.DropIndex()
		}
		// A change already visible at the previous check and still not
		// received means the channel lost it.
		if s.seenEpoch.Load() < s.prevEpoch {
			s.local.InvalidateAll()
			s.seenEpoch.Store(s.prevEpoch)
		}
	}
	s.prevEpoch = epoch
	s.local.MarkContact()
}

// fail wraps err for op. Errors other than Redis's own replies mean the
// store could not be reached: they become ErrUnavailable and mark the local
// cache disconnected (unless the caller gave up first).
func (s *Store) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, cache.ErrConflict) || errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrUnavailable) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("%s: redis: %w", op, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	s.local.MarkDisconnected()
	return fmt.Errorf("%s: %w: %v", op, cache.ErrUnavailable, err)
}

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// addAudit queues the audit XADD in a transaction.
func addAudit(ctx context.Context, p redis.Pipeliner, e audit.Entry, now time.Time) error {
	if e.Time.IsZero() {
		e.Time = now.UTC()
	}
	e.ID = ""
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry: %w", err)
	}
	p.XAdd(ctx, &redis.XAddArgs{Stream: keyAudit, Values: []any{"e", b}})
	return nil
}

func publish(ctx context.Context, p redis.Pipeliner, msg string) {
	publishScript.Eval(ctx, p, []string{keyEpoch, keyDueMark, keyDue}, channel, msg)
}

// touch publishes ref's invalidation and marks ref, and the subjects in
// also, for recomputation by the lifecycle executor.
func touch(ctx context.Context, p redis.Pipeliner, ref model.SubjectRef, also ...model.SubjectRef) {
	args := make([]any, 0, 3+len(also))
	args = append(args, channel, subjectMsg(ref), cache.SubjectMember(ref))
	for _, a := range also {
		args = append(args, cache.SubjectMember(a))
	}
	publishScript.Eval(ctx, p, []string{keyEpoch, keyDueMark, keyDue}, args...)
}

func subjectMsg(ref model.SubjectRef) string { return "s " + ref.Entity + "\x00" + ref.ID }

// Registers returns the current register index.
func (s *Store) Registers(ctx context.Context) (*model.Index, error) {
	if ok, _ := s.local.Servable(); ok {
		if ix := s.local.Index(); ix != nil {
			return ix, nil
		}
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	gen := s.local.Gen()
	vals, err := s.c.HMGet(ctx, keyRegisters, "version", "data").Result()
	if err != nil {
		return nil, s.fail("read registers", err)
	}
	ix, err := decodeIndex(vals)
	if err != nil {
		return nil, err
	}
	if s.local.Gen() == gen {
		s.local.SetIndex(ix)
	}
	return ix, nil
}

func decodeIndex(vals []any) (*model.Index, error) {
	vs, _ := vals[0].(string)
	data, _ := vals[1].(string)
	if vs == "" || data == "" {
		return cache.EmptyIndex(), nil
	}
	v, err := strconv.ParseInt(vs, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("read registers: bad version %q", vs)
	}
	var r model.Registers
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return nil, fmt.Errorf("read registers: decode: %w", err)
	}
	ix, err := model.NewIndex(&r, v)
	if err != nil {
		return nil, fmt.Errorf("read registers: stored version %d is invalid: %w", v, err)
	}
	return ix, nil
}

// SaveRegisters replaces the registers when the version is expect.
func (s *Store) SaveRegisters(ctx context.Context, regs *model.Registers, expect int64, entry audit.Entry) (int64, error) {
	if err := regs.Validate(); err != nil {
		return 0, fmt.Errorf("save registers: %w", err)
	}
	data, err := json.Marshal(regs)
	if err != nil {
		return 0, fmt.Errorf("save registers: encode: %w", err)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	next := expect + 1
	err = s.c.Watch(ctx, func(tx *redis.Tx) error {
		cur, err := tx.HGet(ctx, keyRegisters, "version").Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if cur != expect {
			return fmt.Errorf("%w: stored version %d, expected %d", cache.ErrConflict, cur, expect)
		}
		entry.Before, entry.After = expect, next
		rc, _ := json.Marshal(cache.RecomputeProgress{Version: next, Started: s.opts.Clock().UTC()})
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, keyRegisters, "version", next, "data", data)
			p.HSet(ctx, keyRecompute, "version", next, "p", rc)
			if err := addAudit(ctx, p, entry, s.opts.Clock()); err != nil {
				return err
			}
			publish(ctx, p, "r "+strconv.FormatInt(next, 10))
			return nil
		})
		return err
	}, keyRegisters)
	if errors.Is(err, redis.TxFailedErr) {
		err = fmt.Errorf("%w: registers changed concurrently", cache.ErrConflict)
	}
	if err != nil {
		return 0, s.fail("save registers", err)
	}
	s.local.DropIndex()
	return next, nil
}

type subjectData struct {
	meta *model.Subject
	// seen is the recorded origin (key <S>:seen) and seenSrc how it was
	// learnt.
	seen        time.Time
	seenSrc     cache.OriginSource
	evidence    []model.Evidence
	restriction string
	applied     cache.Applied
}

// subjectCmds are one subject's reads queued in a pipeline.
type subjectCmds struct {
	meta, seen, restr, swept *redis.StringCmd
	evs                      *redis.MapStringStringCmd
}

func queueSubject(ctx context.Context, p redis.Pipeliner, ref model.SubjectRef, swept bool) subjectCmds {
	c := subjectCmds{
		meta:  p.Get(ctx, keyMeta(ref)),
		seen:  p.Get(ctx, keySeen(ref)),
		evs:   p.HGetAll(ctx, keyEvidence(ref)),
		restr: p.Get(ctx, keyRestriction(ref)),
	}
	if swept {
		c.swept = p.Get(ctx, keySwept(ref))
	}
	return c
}

func (c subjectCmds) decode() (subjectData, error) {
	var d subjectData
	if b, err := c.meta.Bytes(); err == nil {
		var m model.Subject
		if err := json.Unmarshal(b, &m); err != nil {
			return d, fmt.Errorf("decode subject: %w", err)
		}
		d.meta = &m
	}
	if v, err := c.seen.Result(); err == nil {
		d.seen, d.seenSrc = parseOrigin(v)
	}
	var err error
	if d.evidence, err = decodeEvidence(c.evs.Val()); err != nil {
		return d, err
	}
	d.restriction = c.restr.Val()
	if c.swept != nil {
		if v, err := c.swept.Result(); err == nil {
			d.applied = parseApplied(v)
		}
	}
	return d, nil
}

// readSubject reads one subject's keys in one round trip.
func (s *Store) readSubject(ctx context.Context, ref model.SubjectRef) (subjectData, error) {
	p := s.c.Pipeline()
	c := queueSubject(ctx, p, ref, false)
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return subjectData{}, err
	}
	return c.decode()
}

// A recorded origin is "o <RFC 3339>" (observed) or "s <RFC 3339>"
// (stated); a bare timestamp (older stores) counts as observed.
func formatOrigin(at time.Time, src cache.OriginSource) string {
	p := "o "
	if src == cache.OriginStated {
		p = "s "
	}
	return p + at.UTC().Format(time.RFC3339Nano)
}

func parseOrigin(v string) (time.Time, cache.OriginSource) {
	src := cache.OriginObserved
	switch {
	case strings.HasPrefix(v, "s "):
		src, v = cache.OriginStated, v[2:]
	case strings.HasPrefix(v, "o "):
		v = v[2:]
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, cache.OriginNone
	}
	return t, src
}

// The applied state is "<obliviated mask>:<round>".
func formatApplied(a cache.Applied) string {
	return strconv.FormatUint(uint64(a.Obliviated), 10) + ":" + strconv.Itoa(a.Round)
}

func parseApplied(v string) cache.Applied {
	o, r, _ := strings.Cut(v, ":")
	ob, _ := strconv.ParseUint(o, 10, 32)
	rn, _ := strconv.Atoi(r)
	return cache.Applied{Obliviated: uint32(ob), Round: rn}
}

func decodeEvidence(m map[string]string) ([]model.Evidence, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make([]model.Evidence, 0, len(m))
	for _, v := range m {
		var ev model.Evidence
		if err := json.Unmarshal([]byte(v), &ev); err != nil {
			return nil, fmt.Errorf("decode evidence: %w", err)
		}
		out = append(out, ev)
	}
	sortEvidence(out)
	return out, nil
}

// record is the stored subject with its origin resolved: PutSubject's when
// set, else the recorded one, else zero (OriginNone).
func (d subjectData) record(ref model.SubjectRef) (cache.SubjectRecord, cache.OriginSource) {
	rec := cache.SubjectRecord{Subject: model.Subject{Ref: ref, Origin: d.seen}, Evidence: d.evidence, Restriction: d.restriction}
	src := d.seenSrc
	if d.seen.IsZero() {
		src = cache.OriginNone
	}
	if d.meta != nil {
		rec.Subject = *d.meta
		rec.Subject.Ref = ref
		if rec.Subject.Origin.IsZero() {
			rec.Subject.Origin = d.seen
		} else {
			src = cache.OriginSet
		}
		rec.Known = true
	}
	if len(d.evidence) > 0 {
		rec.Known = true
	}
	return rec, src
}

// Facts returns the subject's computed state at now.
func (s *Store) Facts(ctx context.Context, ref model.SubjectRef, now time.Time) (cache.Facts, error) {
	if ok, stale := s.local.Servable(); ok {
		if f, hit := s.local.Get(ref, now); hit {
			s.local.CountHit()
			if stale {
				f.Stale = true
				s.local.CountStale()
			}
			return f, nil
		}
	}
	s.local.CountMiss()
	f, err := s.loadFacts(ctx, ref, now)
	if err != nil {
		if errors.Is(err, cache.ErrUnavailable) {
			s.local.CountUnavailable()
		}
		return cache.Facts{}, err
	}
	return f, nil
}

func (s *Store) loadFacts(ctx context.Context, ref model.SubjectRef, now time.Time) (cache.Facts, error) {
	ix, err := s.Registers(ctx)
	if err != nil {
		return cache.Facts{}, err
	}
	// After Registers: caching a new index bumps the generation. A register
	// change after this point is caught by the entry's version check.
	gen := s.local.Gen()
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	// Reads never write: an unknown subject is evaluated, not recorded.
	d, err := s.readSubject(ctx, ref)
	if err != nil {
		return cache.Facts{}, s.fail("facts", err)
	}
	rec, src := d.record(ref)
	var inherited []model.Evidence
	var parent *model.SubjectRef
	if rec.Subject.Parent != nil {
		parent = rec.Subject.Parent
		m, err := s.c.HGetAll(ctx, keyEvidence(*parent)).Result()
		if err != nil {
			return cache.Facts{}, s.fail("facts: parent evidence", err)
		}
		if inherited, err = decodeEvidence(m); err != nil {
			return cache.Facts{}, err
		}
	}
	f := cache.ComputeFacts(ix, rec, src, inherited, now)
	s.local.Put(ref, parent, f, gen)
	return f, nil
}

// Subject returns everything stored for ref.
func (s *Store) Subject(ctx context.Context, ref model.SubjectRef) (cache.SubjectRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	d, err := s.readSubject(ctx, ref)
	if err != nil {
		return cache.SubjectRecord{}, s.fail("subject", err)
	}
	rec, _ := d.record(ref)
	return rec, nil
}

// PutSubject creates or replaces a subject's metadata.
func (s *Store) PutSubject(ctx context.Context, sub model.Subject, entry audit.Entry) error {
	if sub.Ref.Entity == "" || sub.Ref.ID == "" {
		return fmt.Errorf("put subject: entity and id are required")
	}
	b, err := json.Marshal(sub)
	if err != nil {
		return fmt.Errorf("put subject: encode: %w", err)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	member := cache.SubjectMember(sub.Ref)
	err = s.c.Watch(ctx, func(tx *redis.Tx) error {
		// The old parent loses the child from its children index.
		var old *model.SubjectRef
		if raw, err := tx.Get(ctx, keyMeta(sub.Ref)).Bytes(); err == nil {
			var m model.Subject
			if json.Unmarshal(raw, &m) == nil {
				old = m.Parent
			}
		} else if !errors.Is(err, redis.Nil) {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, keyMeta(sub.Ref), b, 0)
			if old != nil && (sub.Parent == nil || *old != *sub.Parent) {
				p.SRem(ctx, keyChildren(*old), member)
			}
			if sub.Parent != nil {
				p.SAdd(ctx, keyChildren(*sub.Parent), member)
			}
			if err := addAudit(ctx, p, entry, s.opts.Clock()); err != nil {
				return err
			}
			touch(ctx, p, sub.Ref)
			return nil
		})
		return err
	}, keyMeta(sub.Ref))
	if errors.Is(err, redis.TxFailedErr) {
		err = fmt.Errorf("%w: subject changed concurrently, retry", cache.ErrConflict)
	}
	if err != nil {
		return s.fail("put subject", err)
	}
	s.local.Invalidate(sub.Ref)
	return nil
}

// originScript records a subject's origin (KEYS[1] its seen key) unless an
// origin at least as authoritative is recorded (see cache.Store), then
// publishes and marks like publishScript (KEYS[2..4] epoch, duemark, due;
// ARGV[1] the value, ARGV[2] channel, ARGV[3] message, ARGV[4] member).
var originScript = redis.NewScript(`local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(ARGV[1], 1, 2) ~= 's ' or string.sub(cur, 1, 2) == 's ' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
local e = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], e .. ' ' .. ARGV[3])
local m = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[4], -m, ARGV[4])
return 1`)

// RecordOrigin records the subject's origin unless a more authoritative
// one is recorded.
func (s *Store) RecordOrigin(ctx context.Context, ref model.SubjectRef, at time.Time, src cache.OriginSource) (bool, error) {
	if ref.Entity == "" || ref.ID == "" || at.IsZero() || (src != cache.OriginObserved && src != cache.OriginStated) {
		return false, fmt.Errorf("record origin: subject, instant and an observed or stated source are required")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := originScript.Run(ctx, s.c, []string{keySeen(ref), keyEpoch, keyDueMark, keyDue},
		formatOrigin(at, src), channel, subjectMsg(ref), cache.SubjectMember(ref)).Int()
	if err != nil {
		return false, s.fail("record origin", err)
	}
	if n == 0 {
		return false, nil
	}
	s.local.Invalidate(ref)
	return true, nil
}

// Children lists the subjects whose parent is ref.
func (s *Store) Children(ctx context.Context, ref model.SubjectRef) ([]model.SubjectRef, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	ms, err := s.c.SMembers(ctx, keyChildren(ref)).Result()
	if err != nil {
		return nil, s.fail("children", err)
	}
	slices.Sort(ms)
	out := make([]model.SubjectRef, 0, len(ms))
	for _, m := range ms {
		if r, err := cache.ParseSubjectMember(m); err == nil {
			out = append(out, r)
		}
	}
	return out, nil
}
