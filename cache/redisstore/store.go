// Package redisstore is the Redis cache.Store: shared by every sidecar and
// durable (as durable as the Redis deployment: use AOF and replicas). Reads
// go through cache.Local, so a warm Facts or Registers call makes no round
// trip; a miss costs one.
//
// # URLs
//
//	redis://[user:pass@]host:port[/db]            one server (go-redis ParseURL options apply)
//	rediss://...                                  the same over TLS
//	unix:///path/to/redis.sock                    a local socket
//	redis-sentinel://[user:pass@]h1:p1,h2:p2/master[?db=N&sentinel_password=..&addr=h3:p3]
//	redis-cluster://[user:pass@]h1:p1,h2:p2[?addr=h3:p3]   (rediss-cluster:// for TLS)
//
// # Key layout (version 2)
//
// Subjects are sharded: every subject belongs to one of 256 shard tags (a
// hash of its entity and id), and every key of a tag carries the tag's hash
// tag {T}, so a Redis Cluster spreads subjects — and the writes to them —
// over all its masters. The tag names are chosen to hash to evenly spaced
// cluster slots. Within a tag, subjects are grouped into buckets: small
// hashes that Redis stores compactly (listpack), which is what keeps a
// subject with one evidence record near 100 bytes. A subject's whole
// record — origin, parent, children, restriction, lifecycle state applied,
// evidence, and its due score for the lifecycle executor — is one value in
// its bucket, read in one round trip. Global keys, under {g}, are small:
// registers, the wipe queue, leases, the symbol table.
//
//	gdprgate:{T}:b:<n>        hash   subject bucket: compact member → record (codec.go); n < buckets
//	gdprgate:{T}:o:<member>   string a record larger than 64 bytes (the bucket keeps a stub)
//	gdprgate:{T}:k:<n>        hash   evidence-key index bucket: legalisation code + key → subject, id, claim
//	gdprgate:{T}:due          zset   bucket → lowest due score of its subjects (may be lower: lazily raised)
//	gdprgate:{T}:meta         hash   epoch (invalidations), duemark (recompute marks), n (subjects)
//	gdprgate:{T}:audit        stream the audit entries of the tag's writes
//	gdprgate:{T}:evcount      hash   legalisation id → evidence records of the tag
//	gdprgate:{g}:registers    hash   version, data (JSON model.Registers)
//	gdprgate:{g}:recompute    hash   version, p (JSON cache.RecomputeProgress)
//	gdprgate:{g}:layout       hash   version (2), buckets
//	gdprgate:{g}:sym          hash   symbol table: entity names, legalisation ids, actors ↔ codes
//	gdprgate:{g}:meta         hash   epoch
//	gdprgate:{g}:audit        stream audit entries of global writes (registers, wipes)
//	gdprgate:{g}:wipe:<id>    string JSON cache.WipeRecord
//	gdprgate:{g}:wipes        zset   wipe ids by created_at (unix ns)
//	gdprgate:{g}:held         zset   held wipe ids by created_at (unix ns)
//	gdprgate:{g}:wipeq        stream wipe queue (field wipe = id), consumer group "workers"
//	gdprgate:{g}:guard        zset   admitted deletions by instant (ms), mass-deletion guard
//	gdprgate:{g}:lease:<name> string lease holder, PX ttl
//	gdprgate:invalidate       pub/sub "<stream> <epoch> r <version>" | "<stream> <epoch> s <netstrings of members>"
//
// The bucket count per tag is fixed when the store is created
// (cache.Options.Buckets, default 512: about 76 subjects per bucket at ten
// million subjects). Far beyond ~128 subjects per bucket Redis converts
// buckets to its larger encoding (memory per subject roughly doubles, no
// loss of function); `gdprgate store migrate --buckets N` rewrites a store
// with another count.
//
// # Consistency
//
// A write to subjects of one tag is one Lua script: it checks that every
// record it replaces is still the one read (compare-and-set, so concurrent
// writers to other subjects of the same bucket never conflict), writes the
// records, appends the audit entry to the tag's stream, bumps the tag's
// epoch and publishes the invalidation — all or nothing. A write spanning
// tags (an import batch) is one such script per tag, each with its own
// audit entry ("part" i/n); a failed batch is rolled back so that it is
// all or nothing in the end. Writes whose order matters across tags
// (moving an evidence key to another subject, a wipe's restriction and its
// queue entry) are ordered so that an interruption leaves less visible,
// never more. With Options.WaitReplicas, each write is acknowledged only
// after Redis WAIT confirmed it on that many replicas.
//
// Sidecars learn of each other's writes from the pub/sub channel; a health
// loop pings every Options.HealthInterval, compares every stream's epoch
// with what it has seen (a lost message costs at most two intervals) and
// flushes the local cache after any loss of contact or when an epoch went
// backwards (a failover that lost unreplicated writes).
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	neturl "net/url"
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

// Store is the Redis cache.Store.
type Store struct {
	c       redis.UniversalClient
	cluster *redis.ClusterClient // nil unless a cluster
	opts    cache.Options
	local   *cache.Local
	log     *slog.Logger
	sym     symbols
	buckets int

	// seen[i] is the highest epoch of stream i received on the channel;
	// prev[i] the stream's epoch at the previous health check (global
	// stream last).
	seen [numTags + 1]atomic.Int64
	prev [numTags + 1]int64

	hints parentHints
	// misses coalesces the local-cache misses of concurrent decisions.
	misses missBatcher
	// unbatched reads every miss on its own (a benchmark's baseline).
	unbatched bool
	// raw is the miss batcher's own connection (rawread.go); nil for
	// Sentinel and Cluster stores.
	raw *rawReader

	// dueDensity (float64 bits) is how many due subjects the buckets the
	// last Due read held, each: how many buckets the next one reads.
	dueDensity atomic.Uint64

	// beforeWrite, when set (tests), runs before each write round trip.
	beforeWrite func()

	cancel context.CancelFunc
	wg     sync.WaitGroup
	pubsub *redis.PubSub
}

var _ cache.Store = (*Store)(nil)

// ErrOldLayout: the Redis holds gdprgate data in the previous key layout.
var ErrOldLayout = errors.New("the store holds data in key layout 1 (everything under {g}); run `gdprgate store migrate` first")

func randUint64() uint64 { return rand.Uint64() }

// New connects to the Redis at url (see the package doc for the forms),
// checks it answers and holds layout 2 (creating it in an empty store),
// subscribes to invalidations and starts the health loop.
func New(ctx context.Context, url string, opts cache.Options) (*Store, error) {
	return open(ctx, url, opts, false)
}

// open is New; a migration (migrating) may open a store that still holds
// layout 1 keys next to the layout 2 it writes.
func open(ctx context.Context, url string, opts cache.Options, migrating bool) (*Store, error) {
	opts = opts.WithDefaults()
	// Every call sets its own deadline (readCtx: store.timeout; writes:
	// store.write_timeout plus an allowance per record of a batch). The
	// socket bound is only the net under a call that did not: a bulk
	// import's pipelined reply may take longer than write_timeout to start
	// on a busy Redis, within its batch's deadline.
	c, err := newClient(url, max(opts.Timeout, opts.WriteTimeout, socketNet))
	if err != nil {
		return nil, err
	}
	s := &Store{c: c, opts: opts, local: cache.NewLocal(opts), log: opts.Logger}
	if cc, ok := c.(*redis.ClusterClient); ok {
		s.cluster = cc
	}
	if u, err := neturl.Parse(url); err == nil {
		s.raw = newRawReader(c, u.Scheme)
	}
	s.hints.init(opts.MaxSubjects)
	fail := func(err error) (*Store, error) {
		s.local.StopWatchdog()
		if s.pubsub != nil {
			_ = s.pubsub.Close()
		}
		_ = c.Close()
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, max(4*opts.Timeout, opts.WriteTimeout))
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		return fail(fmt.Errorf("redis: %w: %v", cache.ErrUnavailable, err))
	}
	if err := s.openLayout(pctx, migrating); err != nil {
		return fail(err)
	}
	if _, err := s.sym.load(pctx, c); err != nil {
		return fail(s.fail("read symbols", err))
	}
	if err := s.ensureGroup(pctx); err != nil {
		return fail(err)
	}
	if err := s.loadScripts(pctx); err != nil {
		return fail(err)
	}
	if epochs, err := s.readEpochs(pctx); err == nil {
		for i, e := range epochs {
			s.seen[i].Store(e)
			s.prev[i] = e
		}
	}
	s.pubsub = c.Subscribe(context.Background(), channel)
	if _, err := s.pubsub.Receive(pctx); err != nil {
		return fail(fmt.Errorf("redis subscribe: %w: %v", cache.ErrUnavailable, err))
	}
	// Fresh means a health check succeeded within the last two intervals
	// (plus one timeout for the check itself). Armed once open succeeded:
	// an open slower than that bound would otherwise count as an outage,
	// and the first health check would flush what open just loaded.
	s.local.MarkContact()
	s.local.ExpectContactEvery(2*opts.HealthInterval + opts.Timeout)
	bg, stop := context.WithCancel(context.Background())
	s.cancel = stop
	s.wg.Add(2)
	go s.listen(bg)
	go s.health(bg)
	return s, nil
}

// openLayout reads the layout marker, creating it in an empty store and
// refusing a store of layout 1.
func (s *Store) openLayout(ctx context.Context, migrating bool) error {
	m, err := s.c.HGetAll(ctx, keyLayout).Result()
	if err != nil {
		return s.fail("read layout", err)
	}
	if v := m["version"]; v != "" {
		if v != layoutVersion {
			return fmt.Errorf("redis store: key layout %q is not supported by this version (want %s)", v, layoutVersion)
		}
		b, err := strconv.Atoi(m["buckets"])
		if err != nil || b <= 0 {
			return fmt.Errorf("redis store: layout has an invalid bucket count %q", m["buckets"])
		}
		s.buckets = b
		return nil
	}
	n, err := s.c.Exists(ctx, v1Epoch, v1EvKey, v1Due).Result()
	if err != nil {
		return s.fail("read layout", err)
	}
	if n > 0 && !migrating {
		return fmt.Errorf("redis store: %w", ErrOldLayout)
	}
	b := s.opts.Buckets
	if b <= 0 {
		b = defaultBuckets
	}
	// Two sidecars creating the layout at once agree on the first; a
	// layout lost in a failover would make every record unreadable: WAIT.
	out, err := s.run(ctx, call{layoutScript, []string{keyLayout}, []any{layoutVersion, b}})
	if err != nil {
		return s.fail("create layout", err)
	}
	got, _ := out[0].(int64)
	if got <= 0 {
		return fmt.Errorf("redis store: layout has an invalid bucket count %v", out[0])
	}
	s.buckets = int(got)
	return nil
}

// socketNet is the socket timeout under calls that carry their own
// deadline (see open).
const socketNet = 2 * time.Minute

// layoutScript creates the layout marker unless it exists and returns the
// bucket count.
var layoutScript = redis.NewScript(`redis.call('HSETNX', KEYS[1], 'version', ARGV[1])
redis.call('HSETNX', KEYS[1], 'buckets', ARGV[2])
return tonumber(redis.call('HGET', KEYS[1], 'buckets'))`)

func init() { scripts = append(scripts, layoutScript) }

// Buckets is the number of subject buckets per tag of this store.
func (s *Store) Buckets() int { return s.buckets }

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

// apply handles "<stream> <epoch> <kind> <arg>".
func (s *Store) apply(payload string) {
	streamStr, rest, _ := strings.Cut(payload, " ")
	epochStr, rest, _ := strings.Cut(rest, " ")
	kind, arg, _ := strings.Cut(rest, " ")
	switch kind {
	case "r":
		// The cached index is read once: another goroutine may drop it
		// between two reads (a nil dereference, seen under -race).
		ix := s.local.Index()
		if v, err := strconv.ParseInt(arg, 10, 64); err != nil || ix == nil || ix.Version != v {
			s.local.DropIndex()
		}
	case "s":
		refs, err := parseRefList(arg)
		if err != nil {
			s.local.InvalidateAll()
		}
		for _, r := range refs {
			s.local.Invalidate(r)
		}
	default:
		s.local.InvalidateAll()
	}
	i, err1 := strconv.Atoi(streamStr)
	e, err2 := strconv.ParseInt(epochStr, 10, 64)
	if err1 != nil || err2 != nil || i < 0 || i > numTags {
		return
	}
	for {
		old := s.seen[i].Load()
		if e <= old || s.seen[i].CompareAndSwap(old, e) {
			break
		}
	}
}

// refList is the "s" message's argument: netstrings of subject members
// (cache.SubjectMember), unambiguous whatever the ids contain.
func refList(refs []model.SubjectRef) string {
	n := 0
	for _, r := range refs {
		n += len(r.Entity) + len(r.ID) + 8
	}
	// A Builder: its bytes become the string without a copy.
	var b strings.Builder
	b.Grow(n)
	var num [20]byte
	for _, r := range refs {
		// cache.SubjectMember(r), length-prefixed, without building it.
		el := strconv.Itoa(len(r.Entity))
		b.Write(strconv.AppendInt(num[:0], int64(len(el)+1+len(r.Entity)+1+len(r.ID)), 10))
		b.WriteByte(':')
		b.WriteString(el)
		b.WriteByte(':')
		b.WriteString(r.Entity)
		b.WriteByte(':')
		b.WriteString(r.ID)
	}
	return b.String()
}

func parseRefList(s string) ([]model.SubjectRef, error) {
	// Counted first: an import's message lists dozens of subjects, and
	// growing the slice by appends cost more than the parse.
	n := 0
	for rest := s; rest != ""; n++ {
		l, tail, ok := strings.Cut(rest, ":")
		k, err := strconv.Atoi(l)
		if !ok || err != nil || k < 0 || k > len(tail) {
			break
		}
		rest = tail[k:]
	}
	out := make([]model.SubjectRef, 0, n)
	for s != "" {
		n, rest, ok := strings.Cut(s, ":")
		l, err := strconv.Atoi(n)
		if !ok || err != nil || l < 0 || l > len(rest) {
			return out, errCorrupt
		}
		r, err := cache.ParseSubjectMember(rest[:l])
		if err != nil {
			return out, err
		}
		out = append(out, r)
		s = rest[l:]
	}
	return out, nil
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

// readEpochs reads every stream's epoch (tags, then global) in one
// pipelined call.
func (s *Store) readEpochs(ctx context.Context) ([]int64, error) {
	p := s.c.Pipeline()
	cmds := make([]*redis.StringCmd, numTags+1)
	for t := range numTags {
		cmds[t] = p.HGet(ctx, keyMeta(t), "epoch")
	}
	cmds[globalStream] = p.HGet(ctx, keyGMeta, "epoch")
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]int64, len(cmds))
	for i, c := range cmds {
		out[i], _ = c.Int64()
	}
	return out, nil
}

func (s *Store) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	p := s.c.Pipeline()
	verCmd := p.HGet(cctx, keyRegisters, "version")
	genCmd := p.HGet(cctx, keySymbols, "gen")
	_, err := p.Exec(cctx)
	var epochs []int64
	if err == nil || errors.Is(err, redis.Nil) {
		epochs, err = s.readEpochs(cctx)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		if ctx.Err() == nil && s.local.Connected() {
			s.log.Warn("redis unreachable; serving cached facts within the staleness bound", "err", err)
		}
		s.local.MarkDisconnected()
		return
	}
	version, _ := verCmd.Int64()
	if gen := genCmd.Val(); gen != s.sym.current().gen {
		// The store was emptied or replaced: codes may mean other names.
		if _, err := s.sym.load(cctx, s.c); err != nil {
			s.local.MarkDisconnected()
			return
		}
		s.local.DropIndex()
	}
	if !s.local.Connected() {
		// Invalidations may have been missed while away: start afresh.
		s.log.Info("redis reachable again; local cache flushed")
		s.local.DropIndex()
		for i, e := range epochs {
			s.seen[i].Store(e)
		}
	} else {
		if ix := s.local.Index(); ix != nil && ix.Version != version {
			s.local.DropIndex()
		}
		flush := false
		for i, e := range epochs {
			switch {
			case e < s.prev[i]:
				// The epoch went backwards: a failover lost writes this
				// sidecar may have read, or the store was emptied.
				flush = true
				s.seen[i].Store(e)
			case s.seen[i].Load() < s.prev[i]:
				// A change visible at the previous check and still not
				// received: the channel lost it.
				flush = true
				s.seen[i].Store(s.prev[i])
			}
		}
		if flush {
			s.local.InvalidateAll()
		}
	}
	copy(s.prev[:], epochs)
	s.local.MarkContact()
}

// fail wraps err for op. Errors that mean the store could not be reached or
// cannot serve now (network, timeouts, a cluster reconfiguring) become
// ErrUnavailable and mark the local cache disconnected (unless the caller
// gave up first); Redis's other replies are returned as they are.
func (s *Store) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, cache.ErrConflict) || errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrUnavailable) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, redis.ErrClosed) && !transient(err) {
		return fmt.Errorf("%s: redis: %w", op, err)
	}
	s.local.MarkDisconnected()
	return fmt.Errorf("%s: %w: %v", op, cache.ErrUnavailable, err)
}

// transient reports Redis replies that mean "not now": a cluster without a
// master for a slot, a replica being promoted, a server loading its data.
func transient(err error) bool {
	for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN", "READONLY", "MOVED", "ASK", "NOREPLICAS"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// ctx bounds a write or an administrative call (Options.WriteTimeout).
func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.WriteTimeout)
}

// readCtx bounds a call of the decisions' hot path (Options.Timeout): the
// sockets allow WriteTimeout, so every hot-path call must come through here
// (or another deadline of Options.Timeout) to fail closed in time. The
// same reads made for the admin API (cache.ForAdmin) get WriteTimeout.
func (s *Store) readCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if cache.IsAdmin(ctx) {
		return context.WithTimeout(ctx, s.opts.WriteTimeout)
	}
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// Registers returns the current register index.
func (s *Store) Registers(ctx context.Context) (*model.Index, error) {
	if ok, _ := s.local.Servable(); ok {
		if ix := s.local.Index(); ix != nil {
			return ix, nil
		}
	}
	ctx, cancel := s.readCtx(ctx)
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

// registersScript replaces the registers when the stored version is
// ARGV[1], starts a recompute, appends the audit entry and publishes.
// KEYS registers, recompute, audit, meta; ARGV expect, next, data,
// recompute progress, entry, channel.
var registersScript = redis.NewScript(`local cur = redis.call('HGET', KEYS[1], 'version') or '0'
if cur ~= ARGV[1] then return {0, cur} end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'data', ARGV[3])
redis.call('HSET', KEYS[2], 'version', ARGV[2], 'p', ARGV[4])
` + auditLua + `
local id = audit(KEYS[3], ARGV[5])
local e = redis.call('HINCRBY', KEYS[4], 'epoch', 1)
redis.call('PUBLISH', ARGV[6], '` + strconv.Itoa(globalStream) + ` ' .. e .. ' r ' .. ARGV[2])
return {1, id}`)

// SaveRegisters replaces the registers when the version is expect.
func (s *Store) SaveRegisters(ctx context.Context, regs *model.Registers, expect int64, entry audit.Entry) (int64, error) {
	if err := regs.Validate(); err != nil {
		return 0, fmt.Errorf("save registers: %w", err)
	}
	data, err := json.Marshal(regs)
	if err != nil {
		return 0, fmt.Errorf("save registers: encode: %w", err)
	}
	next := expect + 1
	entry.Before, entry.After = expect, next
	e, err := encodeEntry(entry, s.opts.Clock())
	if err != nil {
		return 0, fmt.Errorf("save registers: %w", err)
	}
	rc, _ := json.Marshal(cache.RecomputeProgress{Version: next, Started: s.opts.Clock().UTC()})
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.run(ctx, call{registersScript, []string{keyRegisters, keyRecompute, keyGAudit, keyGMeta},
		[]any{expect, next, data, rc, e, channel}})
	if err != nil {
		return 0, s.fail("save registers", err)
	}
	if ok, cur := scriptStatus(res[0]); !ok {
		return 0, fmt.Errorf("save registers: %w: stored version %s, expected %d", cache.ErrConflict, cur, expect)
	}
	s.local.DropIndex()
	return next, nil
}

// Ping checks Redis.
func (s *Store) Ping(ctx context.Context) error {
	// Readiness is the decisions' view: bounded by their timeout.
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	return s.fail("ping", s.c.Ping(ctx).Err())
}

// Close stops the background loops and closes the connections.
func (s *Store) Close() error {
	s.cancel()
	s.local.StopWatchdog()
	_ = s.pubsub.Close()
	s.wg.Wait()
	if s.raw != nil {
		s.raw.Close()
	}
	return s.c.Close()
}
