package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/model"
)

// The lifecycle index: each subject's due score is the first six bytes of
// its record, and each tag's zset {T}:due scores every non-empty bucket
// with the lowest score of its subjects (kept low by every write, raised
// lazily: a bucket found with nothing due has its score recomputed).

// fixBucketScript sets a bucket's score to the lowest score of its indexed
// subjects (removing an empty bucket). KEYS due, bucket; ARGV bucket number.
var fixBucketScript = redis.NewScript(`local vals = redis.call('HVALS', KEYS[2])
if #vals == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) return 0 end
local low = nil
for _, v in ipairs(vals) do
  if #v > 7 and bit.band(string.byte(v, 8), 0xEF) ~= 0 then
    local sc = struct.unpack('>i6', v)
    if low == nil or sc < low then low = sc end
  end
end
if low == nil or low >= 140737488355327 then low = '+inf' end
redis.call('ZADD', KEYS[1], low, ARGV[1])
return 1`)

// dueEntry is an indexed subject found in a bucket.
type dueEntry struct {
	member string
	score  int64
	tag    int
	value  string // the bucket's value: the record, or a stub
}

// bucketEntries lists a bucket's indexed subjects.
func bucketEntries(tag int, vals map[string]string) []dueEntry {
	out := make([]dueEntry, 0, len(vals))
	for m, v := range vals {
		if !indexed(v) {
			continue
		}
		out = append(out, dueEntry{member: m, score: readScore([]byte(v)), tag: tag, value: v})
	}
	return out
}

// dueRefs resolves the entries' subjects; with snaps, each whose record
// was read whole from its bucket (not a stub) and which has no parent
// carries its snapshot.
func (s *Store) dueRefs(ctx context.Context, es []dueEntry, snaps bool) ([]cache.Due, error) {
	sym := s.sym.current()
	out := make([]cache.Due, 0, len(es))
	for _, e := range es {
		ref, err := parseMember(sym, e.member)
		if err != nil {
			t, lerr := s.sym.load(ctx, s.c)
			if lerr != nil {
				return nil, lerr
			}
			sym = t
			if ref, err = parseMember(sym, e.member); err != nil {
				return nil, fmt.Errorf("due: %w", err)
			}
		}
		d := cache.Due{Ref: ref, Score: dueScore(e.score)}
		if snaps {
			d.Snapshot = bucketSnapshot(ref, e.value, sym)
		}
		out = append(out, d)
	}
	return out, nil
}

// bucketSnapshot is the snapshot of a subject whose record is inline in
// its bucket value; nil when the record is a stub, has a parent (whose
// evidence it inherits) or does not decode with sym: Snapshots reads it.
func bucketSnapshot(ref model.SubjectRef, v string, sym symbolTable) *cache.Snapshot {
	if len(v) <= headerLen || v[scoreLen]&flagStub != 0 {
		return nil
	}
	rec, err := decodeRecord(ref, v, "", sym)
	if err != nil || parentOf(rec) != nil {
		return nil
	}
	sr, src := subjectRecord(ref, rec)
	return &cache.Snapshot{Record: sr, Origin: src, Applied: rec.applied}
}

// Due lists subjects due at or before until, earliest first within what is
// read. Every tag holding due buckets contributes a share of limit, and
// the due subjects of a bucket come together, so the order is approximate
// when more than limit are due; the sweeper's repeated calls see them all.
func (s *Store) Due(ctx context.Context, until time.Time, limit int) ([]cache.Due, error) {
	return s.due(ctx, until, limit, true)
}

func (s *Store) due(ctx context.Context, until time.Time, limit int, snaps bool) ([]cache.Due, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.opts.WriteTimeout)
	defer cancel()
	if limit <= 0 {
		limit = 1000
	}
	max := strconv.FormatInt(until.UnixMilli(), 10)
	p := s.c.Pipeline()
	counts := make([]*redis.IntCmd, numTags)
	for t := range numTags {
		counts[t] = p.ZCount(ctx, keyDue(t), "-inf", max)
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, s.fail("due", err)
	}
	var tags []int
	var cnt []int64
	for t, c := range counts {
		if c.Val() > 0 {
			tags = append(tags, t)
			cnt = append(cnt, c.Val())
		}
	}
	if len(tags) == 0 {
		return nil, nil
	}
	// Each tag's share of the buckets read: even, and what a tag with few
	// due buckets leaves goes to the others, so that as many buckets as
	// limit are read while so many are due (each holds a due subject, but
	// for stale scores): a call returns fewer than limit only when fewer
	// are due, which is when the sweeper ends its pass.
	quota := make([]int64, len(tags))
	for left := int64(limit + len(tags)); left > 0; {
		open := int64(0)
		for i := range tags {
			if quota[i] < cnt[i] {
				open++
			}
		}
		if open == 0 {
			break
		}
		step := left/open + 1
		for i := range tags {
			if quota[i] < cnt[i] && left > 0 {
				d := min(step, cnt[i]-quota[i], left)
				quota[i] += d
				left -= d
			}
		}
	}
	p = s.c.Pipeline()
	ranges := make([]*redis.ZSliceCmd, len(tags))
	for i, t := range tags {
		ranges[i] = p.ZRangeByScoreWithScores(ctx, keyDue(t), &redis.ZRangeBy{Min: "-inf", Max: max, Count: quota[i]})
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, s.fail("due", err)
	}
	type bk struct{ tag, bucket int }
	var buckets []bk
	for i, t := range tags {
		for _, z := range ranges[i].Val() {
			m, _ := z.Member.(string)
			b, err := strconv.Atoi(m)
			if err == nil {
				buckets = append(buckets, bk{t, b})
			}
		}
	}
	p = s.c.Pipeline()
	vals := make([]*redis.MapStringStringCmd, len(buckets))
	for i, b := range buckets {
		vals[i] = p.HGetAll(ctx, keyBucket(b.tag, b.bucket))
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, s.fail("due", err)
	}
	untilMS := until.UnixMilli()
	var groups [][]dueEntry
	var fix []call
	for i, b := range buckets {
		var g []dueEntry
		for _, e := range bucketEntries(b.tag, vals[i].Val()) {
			if e.score <= untilMS {
				g = append(g, e)
			}
		}
		if len(g) > 0 {
			groups = append(groups, g)
		}
		if len(g) == 0 {
			// The bucket's score was lower than its subjects' (raised by a
			// sweep commit since): recompute it.
			fix = append(fix, call{fixBucketScript, []string{keyDue(b.tag), keyBucket(b.tag, b.bucket)}, []any{b.bucket}})
		}
	}
	if len(fix) > 0 {
		if _, err := s.run(ctx, fix...); err != nil {
			return nil, s.fail("due: raise bucket scores", err)
		}
	}
	// Whole buckets, earliest bucket first: every due subject of a bucket
	// read is returned with the others (its bucket is then committed in
	// one go and not read again for each of them); the last bucket that
	// does not fit whole fills the limit.
	byScore := func(a, b dueEntry) int {
		return cmp.Or(cmp.Compare(a.score, b.score), strings.Compare(a.member, b.member))
	}
	for _, g := range groups {
		slices.SortFunc(g, byScore)
	}
	slices.SortFunc(groups, func(a, b []dueEntry) int { return byScore(a[0], b[0]) })
	var due []dueEntry
	for _, g := range groups {
		if len(due)+len(g) > limit {
			due = append(due, g[:limit-len(due)]...)
			break
		}
		due = append(due, g...)
	}
	slices.SortFunc(due, byScore)
	return s.dueRefs(ctx, due, snaps)
}

// ScanDue walks every indexed subject, tag by tag (ZSCAN over the tag's
// buckets, so each subject present throughout is returned at least once).
// The cursor is "<tag>:<zscan cursor>".
func (s *Store) ScanDue(ctx context.Context, cursor string, count int) ([]cache.Due, string, error) {
	tag, zc := 0, uint64(0)
	if cursor != "" {
		a, b, ok := strings.Cut(cursor, ":")
		t, err1 := strconv.Atoi(a)
		c, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || err1 != nil || err2 != nil || t < 0 || t >= numTags {
			return nil, "", fmt.Errorf("scan due: invalid cursor %q", cursor)
		}
		tag, zc = t, c
	}
	if count <= 0 {
		count = 100
	}
	ctx, cancel := context.WithTimeout(ctx, 4*s.opts.WriteTimeout)
	defer cancel()
	// A window of tags per round trip: small tags are read whole.
	const window = 32
	var entries []dueEntry
	for len(entries) < count && tag < numTags {
		end := min(tag+window, numTags)
		p := s.c.Pipeline()
		scans := make([]*redis.ScanCmd, end-tag)
		for t := tag; t < end; t++ {
			c := uint64(0)
			if t == tag {
				c = zc
			}
			scans[t-tag] = p.ZScan(ctx, keyDue(t), c, "", int64(max(count, 64)))
		}
		if _, err := p.Exec(ctx); err != nil {
			return nil, "", s.fail("scan due", err)
		}
		type bk struct{ tag, bucket int }
		var buckets []bk
		nextTag, nextC := end, uint64(0)
		for t := tag; t < end; t++ {
			kv, c := scans[t-tag].Val()
			for i := 0; i+1 < len(kv); i += 2 {
				if b, err := strconv.Atoi(kv[i]); err == nil {
					buckets = append(buckets, bk{t, b})
				}
			}
			if c != 0 {
				// This tag is not finished: continue it next time, and
				// drop what later tags of the window returned.
				nextTag, nextC = t, c
				break
			}
		}
		p = s.c.Pipeline()
		vals := make([]*redis.MapStringStringCmd, len(buckets))
		for i, b := range buckets {
			vals[i] = p.HGetAll(ctx, keyBucket(b.tag, b.bucket))
		}
		if len(buckets) > 0 {
			if _, err := p.Exec(ctx); err != nil {
				return nil, "", s.fail("scan due", err)
			}
		}
		for i, b := range buckets {
			entries = append(entries, bucketEntries(b.tag, vals[i].Val())...)
		}
		tag, zc = nextTag, nextC
	}
	ds, err := s.dueRefs(ctx, entries, true)
	if err != nil {
		return nil, "", err
	}
	if tag >= numTags {
		return ds, "", nil
	}
	return ds, strconv.Itoa(tag) + ":" + strconv.FormatUint(zc, 10), nil
}

// DueCount counts indexed subjects (exactly) and those due at or before
// until (exactly up to a few thousand buckets due, then a lower bound).
func (s *Store) DueCount(ctx context.Context, until time.Time) (int, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.opts.WriteTimeout)
	defer cancel()
	p := s.c.Pipeline()
	totals := make([]*redis.StringCmd, numTags)
	for t := range numTags {
		totals[t] = p.HGet(ctx, keyMeta(t), "n")
	}
	if _, err := p.Exec(ctx); err != nil && !isNil(err) {
		return 0, 0, s.fail("due count", err)
	}
	total := 0
	for _, c := range totals {
		n, _ := c.Int()
		total += n
	}
	ds, err := s.due(ctx, until, 100000, false)
	if err != nil {
		return 0, 0, err
	}
	return total, len(ds), nil
}

// sweepScript moves subjects of one tag to their next due score when
// their score is still the one the sweeper read (every write of a
// subject's data gives it a fresh mark, so a write in between fails the
// compare), patching the score in place: the record's body is not read
// by the sweeper nor sent again, nothing cached changes (no epoch, no
// invalidation), and each touched bucket's score in the due zset is set
// right at once — raised when a moved subject may have held the bucket's
// lowest score — instead of being found stale by the next Due.
//
//	KEYS: 1 due, then per subject its bucket
//	ARGV: per subject member, expected score, new score, bucket number
//	Reply: per subject 1 (moved) or 0 (changed meanwhile, or gone)
var sweepScript = redis.NewScript(`local n = #KEYS - 1
local out, low, high, key = {}, {}, {}, {}
for i = 1, n do
  local a = (i - 1) * 4
  local bk, m, b = KEYS[1 + i], ARGV[a + 1], ARGV[a + 4]
  local exp, new = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local v = redis.call('HGET', bk, m)
  out[i] = 0
  if v and #v > 7 and bit.band(string.byte(v, 8), 0xEF) ~= 0 and struct.unpack('>i6', v) == exp then
    out[i] = 1
    if new ~= exp then
      redis.call('HSET', bk, m, struct.pack('>i6', new) .. string.sub(v, 7))
      key[b] = bk
      if high[b] == nil or exp < high[b] then high[b] = exp end
      if low[b] == nil or new < low[b] then low[b] = new end
    end
  end
end
for b, bk in pairs(key) do
  local cur = tonumber(redis.call('ZSCORE', KEYS[1], b))
  if cur ~= nil and cur < high[b] then
    -- A subject not moved here holds the lowest score.
    local sc = low[b]
    if sc >= 140737488355327 then sc = '+inf' end
    redis.call('ZADD', KEYS[1], 'LT', sc, b)
  else
    local lo = nil
    for _, v in ipairs(redis.call('HVALS', bk)) do
      if #v > 7 and bit.band(string.byte(v, 8), 0xEF) ~= 0 then
        local sc = struct.unpack('>i6', v)
        if lo == nil or sc < lo then lo = sc end
      end
    end
    if lo == nil or lo >= 140737488355327 then lo = '+inf' end
    redis.call('ZADD', KEYS[1], lo, b)
  end
end
return out`)

func init() { scripts = append(scripts, sweepScript) }

// CommitSweep applies each update whose subject's due score is still the
// one the sweeper read (any write in between also changed the score). An
// update that moves the score alone — the common case — is one compare
// and patch in Redis (sweepScript, one call per tag); one that changes the
// applied state rewrites the record (compare-and-set on the whole record,
// published like any write).
func (s *Store) CommitSweep(ctx context.Context, us []cache.SweepUpdate) ([]bool, error) {
	if len(us) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout+time.Duration(len(us))*100*time.Microsecond)
	defer cancel()
	ok := make([]bool, len(us))
	var slow []int
	sym := s.sym.current()
	type tagCall struct {
		keys []string
		args []any
		idx  []int
	}
	byTag := map[int]*tagCall{}
	var tags []int
	seen := make(map[model.SubjectRef]bool, len(us))
	for i, u := range us {
		if seen[u.Ref] {
			continue // a repeated subject is moved once
		}
		seen[u.Ref] = true
		if u.AppliedChanged {
			slow = append(slow, i)
			continue
		}
		m, err := member(sym, u.Ref)
		if err != nil {
			continue // an entity never stored: no record to move
		}
		pl := subjectPlace(u.Ref, s.buckets)
		tc := byTag[pl.tag]
		if tc == nil {
			tc = &tagCall{keys: []string{keyDue(pl.tag)}}
			byTag[pl.tag] = tc
			tags = append(tags, pl.tag)
		}
		tc.keys = append(tc.keys, keyBucket(pl.tag, pl.bucket))
		tc.args = append(tc.args, m, scoreOf(u.Expect), scoreOf(u.Next), pl.bucket)
		tc.idx = append(tc.idx, i)
	}
	if len(tags) > 0 {
		calls := make([]call, len(tags))
		for k, t := range tags {
			calls[k] = call{sweepScript, byTag[t].keys, byTag[t].args}
		}
		if s.beforeWrite != nil {
			s.beforeWrite()
		}
		out, err := s.run(ctx, calls...)
		if err != nil {
			return nil, s.fail("commit sweep", err)
		}
		for k, t := range tags {
			res, _ := out[k].([]any)
			tc := byTag[t]
			if len(res) != len(tc.idx) {
				return nil, s.fail("commit sweep", fmt.Errorf("%d replies for %d subjects", len(res), len(tc.idx)))
			}
			for j, r := range res {
				ok[tc.idx[j]] = r == int64(1)
			}
		}
	}
	if len(slow) == 0 {
		return ok, nil
	}
	sub := make([]cache.SweepUpdate, len(slow))
	for k, i := range slow {
		sub[k] = us[i]
	}
	res, err := s.commitRecords(ctx, sub)
	if err != nil {
		return nil, err
	}
	for k, i := range slow {
		ok[i] = res[k]
	}
	return ok, nil
}

// commitRecords is CommitSweep for updates that change the applied state:
// the records are read, changed and written back with writeScript.
func (s *Store) commitRecords(ctx context.Context, us []cache.SweepUpdate) ([]bool, error) {
	refs := make([]model.SubjectRef, len(us))
	for i, u := range us {
		refs[i] = u.Ref
	}
	recs, err := s.readMap(ctx, refs)
	if err != nil {
		return nil, s.fail("commit sweep", err)
	}
	byTag := map[int]*part{}
	var parts []*part
	which := map[model.SubjectRef]int{}
	for i, u := range us {
		st := recs[u.Ref]
		if !indexed(st.inline) || st.rec.score != scoreOf(u.Expect) {
			continue
		}
		if _, dup := which[u.Ref]; dup {
			continue
		}
		which[u.Ref] = i
		r := cloneRecord(st.rec)
		r.score = scoreOf(u.Next)
		if u.AppliedChanged {
			r.applied = u.Applied
		}
		p := byTag[st.tag]
		if p == nil {
			p = &part{tag: st.tag}
			byTag[st.tag] = p
			parts = append(parts, p)
		}
		p.changes = append(p.changes, &change{cur: st, rec: r})
	}
	ok := make([]bool, len(us))
	if len(parts) == 0 {
		return ok, nil
	}
	// One script per tag, the sweep's common case costing one call for all
	// of a tag's subjects in the batch. The script checks every record
	// before it writes any, so a conflict writes nothing: the subject
	// written meanwhile is left out (it fails alone, and the sweeper reads
	// it again) and the rest of its tag is tried again.
	for len(parts) > 0 {
		res := s.writeParts(ctx, s.sym.current(), parts)
		var again []*part
		for i, r := range res {
			p := parts[i]
			if r.err == nil {
				for _, c := range p.changes {
					ok[which[c.cur.ref]] = true
				}
				continue
			}
			if !errorsIsConflict(r.err) {
				return nil, s.fail("commit sweep", r.err)
			}
			if r.conflict < 1 || r.conflict > len(p.changes) {
				return nil, s.fail("commit sweep", fmt.Errorf("a conflict names change %d of %d", r.conflict, len(p.changes)))
			}
			rest := append(append([]*change(nil), p.changes[:r.conflict-1]...), p.changes[r.conflict:]...)
			if len(rest) > 0 {
				again = append(again, &part{tag: p.tag, changes: rest})
			}
		}
		parts = again
	}
	return ok, nil
}

func errorsIsConflict(err error) bool {
	return err != nil && strings.Contains(err.Error(), errCASConflict.Error())
}

// Recompute is the progress of re-indexing after a register change.
func (s *Store) Recompute(ctx context.Context) (cache.RecomputeProgress, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	raw, err := s.c.HGet(ctx, keyRecompute, "p").Bytes()
	if isNil(err) {
		return cache.RecomputeProgress{}, nil
	}
	if err != nil {
		return cache.RecomputeProgress{}, s.fail("recompute", err)
	}
	var p cache.RecomputeProgress
	if err := json.Unmarshal(raw, &p); err != nil {
		return cache.RecomputeProgress{}, fmt.Errorf("recompute: decode: %w", err)
	}
	return p, nil
}

var saveRecomputeScript = redis.NewScript(`if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'p', ARGV[2])
return 1`)

// SaveRecompute records progress of the current recompute.
func (s *Store) SaveRecompute(ctx context.Context, p cache.RecomputeProgress) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("save recompute: encode: %w", err)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	out, err := s.run(ctx, call{saveRecomputeScript, []string{keyRecompute}, []any{strconv.FormatInt(p.Version, 10), b}})
	if err != nil {
		return s.fail("save recompute", err)
	}
	if n, _ := out[0].(int64); n == 0 {
		return fmt.Errorf("save recompute: %w: registers version %d is no longer the one being recomputed", cache.ErrConflict, p.Version)
	}
	return nil
}

var acquireScript = redis.NewScript(`local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

var releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// AcquireLease takes or extends the named lease (a key with a TTL, so that
// a holder that dies loses it when the TTL runs out).
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || ttl < time.Millisecond {
		return false, fmt.Errorf("acquire lease: name, holder and a ttl of at least 1ms are required")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	out, err := s.run(ctx, call{acquireScript, []string{keyLease(name)}, []any{holder, ttl.Milliseconds()}})
	if err != nil {
		return false, s.fail("acquire lease", err)
	}
	n, _ := out[0].(int64)
	return n == 1, nil
}

// ReleaseLease gives the lease up if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if _, err := s.run(ctx, call{releaseScript, []string{keyLease(name)}, []any{holder}}); err != nil {
		return s.fail("release lease", err)
	}
	return nil
}

// guardScript is the sliding-window mass-deletion guard: KEYS[1] a zset of
// admitted deletions scored by instant (ms); ARGV now, window, limit, n,
// confirm (1/0), a nonce making members unique.
var guardScript = redis.NewScript(`local now, window, limit, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local c = redis.call('ZCARD', KEYS[1])
if ARGV[5] ~= '1' and c + n > limit then return {0, c} end
for i = 1, n do redis.call('ZADD', KEYS[1], now, ARGV[6] .. ':' .. i) end
redis.call('PEXPIRE', KEYS[1], window * 2)
return {1, c}`)

// AdmitDeletions applies the mass-deletion guard, counted in Redis so
// that every sidecar shares it.
func (s *Store) AdmitDeletions(ctx context.Context, n, limit int, window time.Duration, at time.Time, confirm bool) (bool, int, error) {
	if n <= 0 {
		return false, 0, fmt.Errorf("admit deletions: n must be positive")
	}
	conf := "0"
	if confirm {
		conf = "1"
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	out, err := s.run(ctx, call{guardScript, []string{keyGuard}, []any{at.UnixMilli(), window.Milliseconds(), limit, n, conf, cache.NewID("")}})
	if err != nil {
		return false, 0, s.fail("mass-deletion guard", err)
	}
	res, _ := out[0].([]any)
	if len(res) != 2 {
		return false, 0, fmt.Errorf("mass-deletion guard: unexpected reply %v", out[0])
	}
	ok, _ := res[0].(int64)
	c, _ := res[1].(int64)
	return ok == 1, int(c), nil
}
