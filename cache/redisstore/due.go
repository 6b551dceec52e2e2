package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
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

// bucketEntries lists a bucket's indexed subjects (kv: member, value pairs).
func bucketEntries(tag int, kv []string) []dueEntry {
	out := make([]dueEntry, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if v := kv[i+1]; indexed(v) {
			out = append(out, dueEntry{member: kv[i], score: readScore([]byte(v)), tag: tag, value: v})
		}
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
		d := cache.Due{Ref: ref, Score: dueScore(e.score), Token: e.value}
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
	return s.due(ctx, until, limit, true, 0, 1)
}

// DueShard is Due over the tags t with t % shards == shard.
func (s *Store) DueShard(ctx context.Context, until time.Time, limit, shard, shards int) ([]cache.Due, error) {
	if shards < 1 || shard < 0 || shard >= shards {
		return nil, fmt.Errorf("due: shard %d of %d", shard, shards)
	}
	return s.due(ctx, until, limit, true, shard, shards)
}

var _ cache.DueSharder = (*Store)(nil)

func (s *Store) due(ctx context.Context, until time.Time, limit int, snaps bool, shard, shards int) ([]cache.Due, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.opts.WriteTimeout)
	defer cancel()
	if limit <= 0 {
		limit = 1000
	}
	upTo := strconv.FormatInt(until.UnixMilli(), 10)
	p := s.c.Pipeline()
	counts := make([]*redis.IntCmd, numTags)
	for t := shard; t < numTags; t += shards {
		counts[t] = p.ZCount(ctx, keyDue(t), "-inf", upTo)
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, s.fail("due", err)
	}
	var tags []int
	var avail []int64
	for t, c := range counts {
		if c != nil && c.Val() > 0 {
			tags = append(tags, t)
			avail = append(avail, c.Val())
		}
	}
	if len(tags) == 0 {
		return nil, nil
	}
	// Buckets are read in rounds of about as many as should hold the due
	// subjects still wanted, going by how many due subjects the buckets
	// read last held: a bucket holds one due subject at a time when
	// transitions are spread out, all of its subjects after an import. A
	// round that finds too few reads the next due buckets of each tag; a
	// call returns fewer than limit only when fewer are due, which is when
	// the sweeper ends its pass.
	untilMS := until.UnixMilli()
	density := s.density()
	var groups [][]dueEntry
	var fix []call
	got, read, found := 0, 0, 0
	for got < limit {
		budget := int64(float64(limit-got)/density*1.05) + 8
		quota := share(budget, avail)
		p = s.c.Pipeline()
		ranges := make([]*redis.StringSliceCmd, len(tags))
		for i, t := range tags {
			if quota[i] > 0 {
				ranges[i] = p.ZRangeByScore(ctx, keyDue(t), &redis.ZRangeBy{Min: "-inf", Max: upTo,
					Offset: counts[t].Val() - avail[i], Count: quota[i]})
				avail[i] -= quota[i]
			}
		}
		var buckets []placement
		if _, err := p.Exec(ctx); err != nil {
			return nil, s.fail("due", err)
		}
		for i, t := range tags {
			if ranges[i] == nil {
				continue
			}
			for _, m := range ranges[i].Val() {
				if b, err := strconv.Atoi(m); err == nil {
					buckets = append(buckets, placement{t, b})
				}
			}
		}
		if len(buckets) == 0 {
			break
		}
		vals, err := s.readBuckets(ctx, buckets)
		if err != nil {
			return nil, s.fail("due", err)
		}
		n := 0
		for i, b := range buckets {
			var g []dueEntry
			kv := vals[i]
			for j := 0; j+1 < len(kv); j += 2 {
				if v := kv[j+1]; indexed(v) {
					if sc := readScore([]byte(v)); sc <= untilMS {
						g = append(g, dueEntry{member: kv[j], score: sc, tag: b.tag, value: v})
					}
				}
			}
			if len(g) == 0 {
				// The bucket's score was lower than its subjects' (raised by a
				// sweep commit since): recompute it.
				fix = append(fix, call{fixBucketScript, []string{keyDue(b.tag), keyBucket(b.tag, b.bucket)}, []any{b.bucket}})
				continue
			}
			groups = append(groups, g)
			n += len(g)
		}
		got += n
		read += len(buckets)
		found += n
		density = min(max(float64(found)/float64(read), 0.2), 512)
	}
	s.setDensity(density)
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
	due := make([]dueEntry, 0, min(got, limit))
	if got > limit {
		// Each group's earliest subject first, for the order of the groups
		// and for the part of the last one.
		for _, g := range groups {
			for i := 1; i < len(g); i++ {
				if byScore(g[i], g[0]) < 0 {
					g[0], g[i] = g[i], g[0]
				}
			}
		}
		slices.SortFunc(groups, func(a, b []dueEntry) int { return byScore(a[0], b[0]) })
	}
	for _, g := range groups {
		if len(due)+len(g) > limit {
			slices.SortFunc(g, byScore)
			due = append(due, g[:limit-len(due)]...)
			break
		}
		due = append(due, g...)
	}
	slices.SortFunc(due, byScore)
	return s.dueRefs(ctx, due, snaps)
}

// share splits budget among the tags by water-filling: evenly, and what a
// tag with fewer available leaves goes to the others.
func share(budget int64, avail []int64) []int64 {
	quota := make([]int64, len(avail))
	for left := budget; left > 0; {
		open := int64(0)
		for i := range avail {
			if quota[i] < avail[i] {
				open++
			}
		}
		if open == 0 {
			break
		}
		step := left/open + 1
		for i := range avail {
			if quota[i] < avail[i] && left > 0 {
				d := min(step, avail[i]-quota[i], left)
				quota[i] += d
				left -= d
			}
		}
	}
	return quota
}

// density is the due subjects per bucket the last Due found.
func (s *Store) density() float64 {
	if d := math.Float64frombits(s.dueDensity.Load()); d > 0 {
		return d
	}
	return 1
}

func (s *Store) setDensity(d float64) { s.dueDensity.Store(math.Float64bits(d)) }

// readBuckets reads buckets as flat member, value pairs. HSCAN returns a
// compact (listpack) hash whole in one reply, without building a map; a
// bucket grown past the compact encoding is read with HGETALL.
func (s *Store) readBuckets(ctx context.Context, bks []placement) ([][]string, error) {
	p := s.c.Pipeline()
	scans := make([]*redis.ScanCmd, len(bks))
	for i, b := range bks {
		scans[i] = p.HScan(ctx, keyBucket(b.tag, b.bucket), 0, "", 0)
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, err
	}
	out := make([][]string, len(bks))
	var big []int
	for i, c := range scans {
		kv, cur := c.Val()
		if cur != 0 {
			big = append(big, i)
			continue
		}
		out[i] = kv
	}
	if len(big) == 0 {
		return out, nil
	}
	p = s.c.Pipeline()
	all := make([]*redis.MapStringStringCmd, len(big))
	for k, i := range big {
		all[k] = p.HGetAll(ctx, keyBucket(bks[i].tag, bks[i].bucket))
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, err
	}
	for k, i := range big {
		m := all[k].Val()
		kv := make([]string, 0, 2*len(m))
		for f, v := range m {
			kv = append(kv, f, v)
		}
		out[i] = kv
	}
	return out, nil
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
		var buckets []placement
		nextTag, nextC := end, uint64(0)
		for t := tag; t < end; t++ {
			kv, c := scans[t-tag].Val()
			for i := 0; i+1 < len(kv); i += 2 {
				if b, err := strconv.Atoi(kv[i]); err == nil {
					buckets = append(buckets, placement{t, b})
				}
			}
			if c != 0 {
				// This tag is not finished: continue it next time, and
				// drop what later tags of the window returned.
				nextTag, nextC = t, c
				break
			}
		}
		if len(buckets) > 0 {
			vals, err := s.readBuckets(ctx, buckets)
			if err != nil {
				return nil, "", s.fail("scan due", err)
			}
			for i, b := range buckets {
				entries = append(entries, bucketEntries(b.tag, vals[i])...)
			}
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
	ds, err := s.due(ctx, until, 100000, false, 0, 1)
	if err != nil {
		return 0, 0, err
	}
	return total, len(ds), nil
}

// sweepScript moves subjects of one tag to their next due score when
// their score is still the one the sweeper read (every write of a
// subject's data gives it a fresh mark, so a write in between fails the
// compare): the sweeper sends the record as read and as it is to be,
// with only the score changed, so that the script compares and writes
// whole values in the common case — one HMGET and one HSET per bucket, no
// decoding in Lua — and patches the score of a record changed with its
// score kept (a restriction) as before. Nothing
// cached changes (no epoch, no invalidation), and each touched bucket's
// score in the due zset is set right at once — raised when a moved subject
// may have held the bucket's lowest score — instead of being found stale
// by the next Due.
//
//	KEYS: 1 due, then per bucket its key
//	ARGV: per bucket its number, its subject count k, the lowest expected
//	      and the lowest new score of its moved subjects, then per subject
//	      member, value as read, new value
//	Reply: per subject, in order, 1 (moved) or 0 (changed meanwhile, or gone)
var sweepScript = redis.NewScript(`local out, a = {}, 1
for j = 2, #KEYS do
  local bk, b, k, high, low = KEYS[j], ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3]
  a = a + 4
  local ms = {}
  for i = 1, k do ms[i] = ARGV[a + 3 * (i - 1)] end
  local vals = redis.call('HMGET', bk, unpack(ms))
  local set = {}
  for i = 1, k do
    local o = a + 3 * (i - 1)
    local v, old, new = vals[i], ARGV[o + 1], ARGV[o + 2]
    if v ~= old and v and #v > 7 and bit.band(string.byte(v, 8), 0xEF) ~= 0 and string.sub(v, 1, 6) == string.sub(old, 1, 6) then
      -- Changed without a new score (a restriction keeps it): the score
      -- is moved on the record as it is now.
      old, new = v, string.sub(new, 1, 6) .. string.sub(v, 7)
    end
    if v == old then
      out[#out + 1] = 1
      if new ~= old then
        set[#set + 1] = ARGV[o]
        set[#set + 1] = new
      end
    else
      out[#out + 1] = 0
    end
  end
  a = a + 3 * k
  if #set > 0 then
    redis.call('HSET', bk, unpack(set))
    local cur = tonumber(redis.call('ZSCORE', KEYS[1], b))
    if cur ~= nil and cur < high then
      -- A subject not moved here holds the lowest score.
      redis.call('ZADD', KEYS[1], 'LT', low, b)
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
end
return out`)

func init() { scripts = append(scripts, sweepScript) }

// sweepChunk bounds the subjects of one bucket per HMGET/HSET (Lua's
// unpack has a stack limit); a bucket with more takes several.
const sweepChunk = 500

// CommitSweep applies each update whose subject's record is still the one
// the sweeper read (any write in between also changed the score). An
// update that moves the score alone — the common case — is one compare
// and patch in Redis (sweepScript, one call per tag for all of its
// buckets); one that changes the applied state rewrites the record
// (compare-and-set on the whole record, published like any write).
func (s *Store) CommitSweep(ctx context.Context, us []cache.SweepUpdate) ([]bool, error) {
	if len(us) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout+time.Duration(len(us))*100*time.Microsecond)
	defer cancel()
	ok := make([]bool, len(us))
	var slow []int
	sym := s.sym.current()
	type fast struct {
		i      int
		member string
		pl     placement
	}
	fasts := make([]fast, 0, len(us))
	seen := make(map[model.SubjectRef]bool, len(us))
	var untokened []int
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
		if !indexed(u.Token) || readScore([]byte(u.Token)) != scoreOf(u.Expect) {
			untokened = append(untokened, len(fasts))
		}
		fasts = append(fasts, fast{i, m, subjectPlace(u.Ref, s.buckets)})
	}
	// Without the record as read, the current one stands for it when its
	// score is the one expected.
	tokens := make([]string, len(fasts))
	for k, f := range fasts {
		tokens[k] = us[f.i].Token
	}
	for _, k := range untokened {
		tokens[k] = ""
	}
	if len(untokened) > 0 {
		p := s.c.Pipeline()
		cur := make([]*redis.StringCmd, len(untokened))
		for j, k := range untokened {
			cur[j] = p.HGet(ctx, keyBucket(fasts[k].pl.tag, fasts[k].pl.bucket), fasts[k].member)
		}
		if _, err := p.Exec(ctx); err != nil && !isNil(err) {
			return nil, s.fail("commit sweep", err)
		}
		for j, k := range untokened {
			if v := cur[j].Val(); indexed(v) && readScore([]byte(v)) == scoreOf(us[fasts[k].i].Expect) {
				tokens[k] = v
			}
		}
	}
	// Per tag, its buckets in order, each bucket's subjects together.
	order := make([]int, 0, len(fasts))
	for k := range fasts {
		if indexed(tokens[k]) {
			order = append(order, k)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		pa, pb := fasts[a].pl, fasts[b].pl
		return cmp.Or(cmp.Compare(pa.tag, pb.tag), cmp.Compare(pa.bucket, pb.bucket))
	})
	type tagCall struct {
		keys []string
		args []any
		idx  []int // the updates, in the order of the script's replies
	}
	var calls []*tagCall
	for g := 0; g < len(order); {
		pl := fasts[order[g]].pl
		e := g + 1
		for e < len(order) && e-g < sweepChunk && fasts[order[e]].pl == pl {
			e++
		}
		if len(calls) == 0 || fasts[calls[len(calls)-1].idx[0]].pl.tag != pl.tag {
			calls = append(calls, &tagCall{keys: []string{keyDue(pl.tag)}})
		}
		tc := calls[len(calls)-1]
		high, low := scoreNever, scoreNever
		args := make([]any, 0, 4+3*(e-g))
		args = append(args, pl.bucket, e-g, nil, nil)
		for _, k := range order[g:e] {
			u := us[fasts[k].i]
			old := tokens[k]
			exp, next := readScore([]byte(old)), scoreOf(u.Next)
			nv := old
			if next != exp {
				b := []byte(old)
				putScore(b, next)
				nv = string(b)
				high, low = min(high, exp), min(low, next)
			}
			args = append(args, fasts[k].member, old, nv)
			tc.idx = append(tc.idx, k)
		}
		args[2] = high
		if low >= scoreNever {
			args[3] = "+inf"
		} else {
			args[3] = low
		}
		tc.keys = append(tc.keys, keyBucket(pl.tag, pl.bucket))
		tc.args = append(tc.args, args...)
		g = e
	}
	if len(calls) > 0 {
		run := make([]call, len(calls))
		for k, tc := range calls {
			run[k] = call{sweepScript, tc.keys, tc.args}
		}
		if s.beforeWrite != nil {
			s.beforeWrite()
		}
		out, err := s.run(ctx, run...)
		if err != nil {
			return nil, s.fail("commit sweep", err)
		}
		for k, tc := range calls {
			res, _ := out[k].([]any)
			if len(res) != len(tc.idx) {
				return nil, s.fail("commit sweep", fmt.Errorf("%d replies for %d subjects", len(res), len(tc.idx)))
			}
			for j, r := range res {
				ok[fasts[tc.idx[j]].i] = r == int64(1)
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
