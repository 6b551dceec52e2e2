package redisstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// auditLua defines audit(key, entry): append the entry to a stream under an
// id of microsecond resolution (<ms>-<µs within the ms × 1000>, or the
// next free one), so that merging the tags' streams orders entries by the
// instant they were written; "" appends nothing.
const auditLua = `local function audit(key, e)
  if e == '' then return '' end
  local t = redis.call('TIME')
  local us = tonumber(t[2])
  local ms = tonumber(t[1]) * 1000 + math.floor(us / 1000)
  local seq = (us % 1000) * 1000
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if last[1] then
    local lms, lseq = string.match(last[1][1], '^(%d+)-(%d+)$')
    lms, lseq = tonumber(lms), tonumber(lseq)
    if lms > ms or (lms == ms and lseq >= seq) then ms, seq = lms, lseq + 1 end
  end
  local id = string.format('%.0f-%.0f', ms, seq)
  local r = redis.pcall('XADD', key, id, 'e', e)
  if type(r) == 'table' and r.err then r = redis.call('XADD', key, '*', 'e', e) end
  return r
end
`

// commitLua defines commit(dn, k, at), the end every subject write shares
// (writeScript, insertScript): change the indexed-subject count by dn, add
// the k legalisation deltas found as pairs from ARGV[at + 2], audit
// ARGV[2], bump the epoch and publish the tag's members (KEYS 1 meta,
// 3 audit, 4 evcount; ARGV 3 channel, 4 members, 5 tag). It answers
// {1, audit id}.
const commitLua = `local function commit(dn, k, at)
  if dn ~= 0 then redis.call('HINCRBY', KEYS[1], 'n', dn) end
  for j = 1, k do
    redis.call('HINCRBY', KEYS[4], ARGV[at + 2 * j], ARGV[at + 1 + 2 * j])
  end
  local id = audit(KEYS[3], ARGV[2])
  local e = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('PUBLISH', ARGV[3], ARGV[5] .. ' ' .. e .. ' s ' .. ARGV[4])
  return {1, id}
end
`

// writeScript replaces the records of subjects of one tag when each is
// still the one read, then counts, audits, bumps the epoch and publishes.
//
//	KEYS: 1 meta, 2 due, 3 audit, 4 evcount, then per subject its bucket and overflow key
//	ARGV: 1 n, 2 entry ("" none), 3 channel, 4 message members, 5 tag, 6 k,
//	      7 deadline (unix ms: a script reaching Redis later, say from the
//	      socket buffer of a server that was frozen, changes nothing),
//	      8.. k pairs (legalisation, delta), then per subject 8 values:
//	      member, old inline, old overflow, new inline ("" deletes),
//	      new overflow, "m" for a fresh recompute mark, bucket number,
//	      change of the indexed-subject count (-1, 0, 1)
//
// A record that is not the one read writes nothing and answers {0, i,
// current}: i the first such subject, current each subject's inline and
// overflow ("" unless the inline is a stub) as they are.
var writeScript = redis.NewScript(auditLua + commitLua + `
local n, k = tonumber(ARGV[1]), tonumber(ARGV[6])
local base = 7 + 2 * k
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[7]) then return {-1} end
local bad = 0
for i = 1, n do
  local a = base + (i - 1) * 8
  local old = ARGV[a + 2]
  if (redis.call('HGET', KEYS[3 + 2 * i], ARGV[a + 1]) or '') ~= old then bad = i break end
  -- A record inline has no overflow key; a stub's overflow must be the one read.
  if #old > 6 and bit.band(string.byte(old, 7), 1) == 1 and (redis.call('GET', KEYS[4 + 2 * i]) or '') ~= ARGV[a + 3] then bad = i break end
end
if bad > 0 then
  -- The records as they are now: the caller rebuilds from them without
  -- reading again.
  local cur = {}
  for i = 1, n do
    local v = redis.call('HGET', KEYS[3 + 2 * i], ARGV[base + (i - 1) * 8 + 1]) or ''
    local o = ''
    if #v > 6 and bit.band(string.byte(v, 7), 1) == 1 then o = redis.call('GET', KEYS[4 + 2 * i]) or '' end
    cur[2 * i - 1], cur[2 * i] = v, o
  end
  return {0, bad, cur}
end
local dn, nm = 0, 0
for i = 1, n do
  if ARGV[base + (i - 1) * 8 + 6] == 'm' then nm = nm + 1 end
end
-- One range of fresh recompute marks for the whole part.
local mark = 0
if nm > 0 then mark = redis.call('HINCRBY', KEYS[1], 'duemark', nm) - nm end
for i = 1, n do
  local a = base + (i - 1) * 8
  local bk, ok = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local old, new, newO = ARGV[a + 2], ARGV[a + 4], ARGV[a + 5]
  if new == '' then
    if old ~= '' then
      redis.call('HDEL', bk, ARGV[a + 1])
      if redis.call('EXISTS', bk) == 0 then redis.call('ZREM', KEYS[2], ARGV[a + 7]) end
    end
  else
    if ARGV[a + 6] == 'm' then
      mark = mark + 1
      new = struct.pack('>i6', -mark) .. string.sub(new, 7)
    end
    redis.call('HSET', bk, ARGV[a + 1], new)
    local sc = struct.unpack('>i6', new)
    if sc >= 140737488355327 then sc = '+inf' end
    redis.call('ZADD', KEYS[2], 'LT', sc, ARGV[a + 7])
  end
  dn = dn + tonumber(ARGV[a + 8])
  if newO == '' then
    if ARGV[a + 3] ~= '' then redis.call('DEL', ok) end
  else
    redis.call('SET', ok, newO)
  end
end
return commit(dn, k, 6)`)

// insertScript is writeScript for a part whose every subject is read as
// absent, gets a fresh recompute mark and an inline record: an import of
// new subjects. Its per-record work is one HSETNX (the compare-and-set of
// an absent record and its write in one command) instead of an HGET, an
// HSET and a ZADD; the due index gets one ZADD per part with each bucket's
// lowest mark, and the records arrive without their score, which the
// script prefixes.
//
//	KEYS: 1 meta, 2 due, 3 audit, 4 evcount, then the part's buckets
//	ARGV: 1 n, 2 entry ("" none), 3 channel, 4 message members, 5 tag, 6 k,
//	      7 deadline (as writeScript's), 8 change of the indexed-subject
//	      count, 9.. k pairs (legalisation, delta), then per bucket
//	      (KEYS[4 + j]) its number, then per subject 3 values: member,
//	      record without its score, j
//
// A subject that has a record makes the script delete the records it had
// added (so nothing is changed) and answer as writeScript does: {0, i,
// current}, or {0, i} when a current record is a stub (the caller reads
// the subjects again).
var insertScript = redis.NewScript(auditLua + commitLua + `
local n, k = tonumber(ARGV[1]), tonumber(ARGV[6])
local bb = 8 + 2 * k
local base = bb + #KEYS - 4
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[7]) then return {-1} end
local m0 = tonumber(redis.call('HGET', KEYS[1], 'duemark') or '0')
local low = {}
for i = 1, n do
  local a = base + (i - 1) * 3
  local j = tonumber(ARGV[a + 3])
  if redis.call('HSETNX', KEYS[4 + j], ARGV[a + 1], struct.pack('>i6', -(m0 + i)) .. ARGV[a + 2]) == 0 then
    for h = 1, i - 1 do
      local ah = base + (h - 1) * 3
      redis.call('HDEL', KEYS[4 + tonumber(ARGV[ah + 3])], ARGV[ah + 1])
    end
    local cur = {}
    for h = 1, n do
      local ah = base + (h - 1) * 3
      local v = redis.call('HGET', KEYS[4 + tonumber(ARGV[ah + 3])], ARGV[ah + 1]) or ''
      if #v > 6 and bit.band(string.byte(v, 7), 1) == 1 then return {0, i} end
      cur[2 * h - 1], cur[2 * h] = v, ''
    end
    return {0, i, cur}
  end
  low[j] = -(m0 + i)
end
redis.call('HINCRBY', KEYS[1], 'duemark', n)
local z = {}
for j, sc in pairs(low) do
  z[#z + 1], z[#z + 2] = sc, ARGV[bb + j]
  if #z >= 1000 then redis.call('ZADD', KEYS[2], 'LT', unpack(z)) z = {} end
end
if #z > 0 then redis.call('ZADD', KEYS[2], 'LT', unpack(z)) end
return commit(tonumber(ARGV[8]), k, 7)`)

// markScript gives subjects of one tag fresh recompute marks, if they have
// a record: the children of a subject written in another tag.
//
//	KEYS: 1 meta, 2 due, then per subject its bucket; ARGV: tag, channel,
//	message members, then per subject member and bucket number
var markScript = redis.NewScript(`local n = #KEYS - 2
for i = 1, n do
  local v = redis.call('HGET', KEYS[2 + i], ARGV[2 + 2 * i])
  if v then
    local m = redis.call('HINCRBY', KEYS[1], 'duemark', 1)
    redis.call('HSET', KEYS[2 + i], ARGV[2 + 2 * i], struct.pack('>i6', -m) .. string.sub(v, 7))
    redis.call('ZADD', KEYS[2], 'LT', -m, ARGV[3 + 2 * i])
  end
end
local e = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ' .. e .. ' s ' .. ARGV[3])
return e`)

// change is one subject's new record in a write.
type change struct {
	cur *stored
	// rec is the new record; nil deletes it.
	rec *record
	// mark gives the subject a fresh recompute mark (every write of a
	// subject's data does; the sweeper's commit sets its score instead).
	mark bool
	// records counts the batch records the change holds (audit detail).
	records int
	// shared: rec.evidence is a one-record window on the caller's batch
	// (PutEvidence's output), to be copied before it is changed in place.
	shared bool
}

// part is a write to the subjects of one tag: atomic with its audit entry.
type part struct {
	tag     int
	changes []*change
	entry   *audit.Entry
	evcount map[string]int64
	// notify are extra subjects whose cached facts the write changes
	// (children in the same tag); the changed subjects are notified anyway.
	notify []model.SubjectRef
	// records counts the batch records the part holds (audit detail).
	records int
}

// errCASConflict: a record changed between read and write; re-read.
var errCASConflict = errors.New("record changed concurrently")

// partResult is the outcome of one part.
type partResult struct {
	err error // nil: written
	// conflict is the 1-based index of the change whose record changed
	// since it was read, when err is a CAS conflict (nothing was written).
	conflict int
	// current holds, after a conflict, each change's record as it is now:
	// inline and overflow values, two per change.
	current []string
	auditID string
}

// writeParts runs every part (each one script, atomic) in one round trip
// per node.
func (s *Store) writeParts(ctx context.Context, sym symbolTable, parts []*part) []partResult {
	res := make([]partResult, len(parts))
	// A script that reaches Redis after the caller gave up must not run:
	// the caller may have rolled the other parts back. The margin covers
	// clock differences between this host and the Redis servers.
	deadline := time.Now().Add(2*s.opts.Timeout + time.Second)
	if d, ok := ctx.Deadline(); ok {
		deadline = d.Add(s.opts.Timeout + time.Second)
	}
	calls := make([]call, 0, len(parts))
	idx := make([]int, 0, len(parts))
	for i, p := range parts {
		c, err := s.partCall(sym, p, deadline)
		if err != nil {
			res[i].err = err
			continue
		}
		calls = append(calls, c)
		idx = append(idx, i)
	}
	if s.beforeWrite != nil {
		s.beforeWrite()
	}
	out, errs := s.runEach(ctx, calls...)
	for k, i := range idx {
		if errs[k] != nil {
			res[i].err = errs[k]
			continue
		}
		a, _ := out[k].([]any)
		if len(a) > 0 && a[0] == int64(-1) {
			res[i].err = fmt.Errorf("%w: the write reached Redis after its deadline and was not applied", cache.ErrUnavailable)
			continue
		}
		if ok, info := scriptStatus(out[k]); !ok {
			res[i].err = fmt.Errorf("%w (subject %s of the part)", errCASConflict, info)
			res[i].conflict, _ = strconv.Atoi(info)
			if len(a) > 2 {
				cur, _ := a[2].([]any)
				if len(cur) == 2*len(parts[i].changes) {
					res[i].current = make([]string, len(cur))
					for k, v := range cur {
						res[i].current[k], _ = v.(string)
					}
				}
			}
			continue
		}
		if len(a) > 1 {
			res[i].auditID, _ = a[1].(string)
		}
	}
	return res
}

func (s *Store) partCall(sym symbolTable, p *part, deadline time.Time) (call, error) {
	entry := ""
	if p.entry != nil {
		e, err := encodeEntry(*p.entry, s.opts.Clock())
		if err != nil {
			return call{}, err
		}
		entry = e
	}
	notify := make([]model.SubjectRef, 0, len(p.changes)+len(p.notify))
	for _, c := range p.changes {
		notify = append(notify, c.cur.ref)
	}
	notify = append(notify, p.notify...)
	var ev []any
	for leg, d := range p.evcount {
		if d != 0 {
			ev = append(ev, leg, d)
		}
	}
	// The new records, encoded once: whether the part can be an insert
	// depends on their sizes. They are encoded into one buffer that becomes
	// one string, each record a substring of it (an import's part holds
	// dozens of records: one allocation instead of two per record).
	inline := make([]string, 2*len(p.changes))
	overflow := inline[len(p.changes):]
	inline = inline[:len(p.changes)]
	ends := make([]int, len(p.changes))
	buf := make([]byte, 0, 48*len(p.changes))
	for i, c := range p.changes {
		if c.rec != nil && c.rec.exists() {
			var err error
			if buf, err = appendRecord(buf, c.rec, sym); err != nil {
				return call{}, err
			}
		}
		ends[i] = len(buf)
	}
	// buf is not written again: the string shares its bytes (as
	// strings.Builder's does).
	all := unsafe.String(unsafe.SliceData(buf), len(buf))
	insert := true
	from := 0
	for i, c := range p.changes {
		if ends[i] > from {
			inline[i], overflow[i] = splitRecordString(all[from:ends[i]])
		}
		from = ends[i]
		insert = insert && c.mark && c.cur.inline == "" && c.cur.overflow == "" && c.cur.member != "" &&
			inline[i] != "" && overflow[i] == ""
	}
	if insert && distinctMembers(p.changes) {
		return insertCall(p, deadline, entry, notify, ev, inline), nil
	}
	keys := make([]string, 0, 4+2*len(p.changes))
	keys = append(keys, keyMeta(p.tag), keyDue(p.tag), keyAudit(p.tag), keyEvCount(p.tag))
	args := make([]any, 0, 7+len(ev)+8*len(p.changes))
	args = append(args, len(p.changes), entry, channel, refList(notify), strconv.Itoa(p.tag))
	args = append(args, len(ev)/2, deadline.UnixMilli())
	args = append(args, ev...)
	for i, c := range p.changes {
		keys = append(keys, keyBucket(p.tag, c.cur.bucket), keyOverflow(p.tag, c.cur.member))
		m := ""
		if c.mark {
			m = "m"
		}
		d := 0
		if indexed(c.cur.inline) {
			d--
		}
		if indexed(inline[i]) {
			d++
		}
		args = append(args, c.cur.member, c.cur.inline, c.cur.overflow, inline[i], overflow[i], m, c.cur.bucket, d)
	}
	return call{writeScript, keys, args}, nil
}

// distinctMembers reports whether no two changes name one subject (an
// insert would refuse its own second write of it).
// Sorted rather than hashed: a part's few dozen members sort in less time
// and memory than a map of them takes to build.
func distinctMembers(cs []*change) bool {
	ms := make([]string, len(cs))
	for i, c := range cs {
		ms[i] = c.cur.member
	}
	slices.Sort(ms)
	for i := 1; i < len(ms); i++ {
		if ms[i] == ms[i-1] {
			return false
		}
	}
	return true
}

// insertCall is the insertScript call of a part whose subjects are all
// absent and get fresh marks, with their new inline records.
func insertCall(p *part, deadline time.Time, entry string, notify []model.SubjectRef, ev []any, inline []string) call {
	keys := make([]string, 0, 4+len(p.changes))
	keys = append(keys, keyMeta(p.tag), keyDue(p.tag), keyAudit(p.tag), keyEvCount(p.tag))
	// slot[i] is change i's bucket's position among the part's buckets
	// (1-based, as the script numbers them): found by a scan of the
	// buckets met so far — a part holds a few dozen — instead of a map.
	slot := make([]int, len(p.changes))
	buckets := make([]int, 0, min(len(p.changes), 64))
	// The bucket keys are substrings of one string.
	var kb strings.Builder
	var kends []int
	var num [20]byte
	d := 0
	for i, c := range p.changes {
		j := slices.Index(buckets, c.cur.bucket)
		if j < 0 {
			j = len(buckets)
			kb.WriteString(tagPrefix[p.tag])
			kb.WriteString("b:")
			kb.Write(strconv.AppendInt(num[:0], int64(c.cur.bucket), 10))
			kends = append(kends, kb.Len())
			buckets = append(buckets, c.cur.bucket)
		}
		slot[i] = j + 1
		if indexed(inline[i]) {
			d++
		}
	}
	ks := kb.String()
	from := 0
	for _, e := range kends {
		keys = append(keys, ks[from:e])
		from = e
	}
	args := make([]any, 0, 8+len(ev)+len(buckets)+3*len(p.changes))
	args = append(args, len(p.changes), entry, channel, refList(notify), strconv.Itoa(p.tag))
	args = append(args, len(ev)/2, deadline.UnixMilli(), d)
	args = append(args, ev...)
	for _, b := range buckets {
		args = append(args, b)
	}
	// The strings go as pointers (go-redis writes *string as the string):
	// an interface holding a string would cost an allocation each. The
	// records without their score overwrite inline (partCall's, not used
	// after this).
	for i, c := range p.changes {
		inline[i] = inline[i][scoreLen:]
		args = append(args, &c.cur.member, &inline[i], slot[i])
	}
	return call{insertScript, keys, args}
}

// sameBody reports whether the stored value is the record rec would
// write, apart from the due score (a retry after an answer was lost finds
// its own write there, with the mark the script gave it).
func sameBody(st *stored, rec *record, sym symbolTable) bool {
	want := []byte(nil)
	if rec != nil && rec.exists() {
		full, err := encodeRecord(rec, sym)
		if err != nil {
			return false
		}
		want = full[headerLen:]
	}
	got := []byte(nil)
	if st.inline != "" {
		if st.inline[scoreLen]&flagStub != 0 {
			if len(st.overflow) >= headerLen {
				got = []byte(st.overflow[headerLen:])
			}
		} else {
			got = []byte(st.inline[headerLen:])
		}
	}
	return bytes.Equal(want, got)
}

// mutation builds the parts of a write from the records as read. It is
// called again with the subjects of the parts whose records changed
// meanwhile, so it must build each tag's part from that tag's records
// alone.
type mutation func(recs map[model.SubjectRef]*stored) ([]*part, error)

// mutate reads refs, builds the write and runs it, re-reading and
// rebuilding the parts that met a concurrent change (compare-and-set),
// a bounded number of times. It returns the parts written and, when it
// fails, the parts whose outcome is unknown (sent, no answer): a
// multi-part write rolls both back (a part that did not run is left
// alone: the rollback compares before it writes).
func (s *Store) mutate(ctx context.Context, names []symName, refs []model.SubjectRef, build mutation) (written, maybe []*part, err error) {
	return s.mutateFrom(ctx, names, refs, build, nil)
}

// mutateFrom is mutate; with guess its first attempt takes every subject
// for absent (built in guess's slabs) instead of reading it (an import of
// new subjects then costs no read round trip, and Redis no read per
// record). A subject
// that does exist fails its part's compare-and-set, whose answer carries
// the records as they are: the part is rebuilt from those, as after any
// conflict, so a wrong guess costs one refused script call, never a lost
// or merged-over record.
func (s *Store) mutateFrom(ctx context.Context, names []symName, refs []model.SubjectRef, build mutation, guess *scratch) (written, maybe []*part, err error) {
	sym, err := s.sym.intern(ctx, s.run, names)
	if err != nil {
		return nil, nil, s.fail("symbols", err)
	}
	todo := refs
	var known map[model.SubjectRef]*stored
	if guess != nil {
		known = s.absent(refs, sym, guess)
	}
	for attempt := 0; ; attempt++ {
		recs := known
		if recs == nil {
			if recs, err = s.readMapWith(ctx, todo, false); err != nil {
				return written, maybe, err
			}
		}
		known = nil
		parts, err := build(recs)
		if err != nil {
			return written, maybe, err
		}
		if len(parts) == 0 {
			return written, maybe, nil
		}
		res := s.writeParts(ctx, sym, parts)
		var again []model.SubjectRef
		var firstErr error
		current := map[model.SubjectRef]*stored{}
		for i, r := range res {
			switch {
			case r.err == nil:
				written = append(written, parts[i])
			case errors.Is(r.err, errCASConflict):
				for k, c := range parts[i].changes {
					again = append(again, c.cur.ref)
					if current != nil && r.current != nil {
						current[c.cur.ref] = &stored{ref: c.cur.ref, tag: c.cur.tag, bucket: c.cur.bucket, member: c.cur.member,
							inline: r.current[2*k], overflow: r.current[2*k+1]}
					} else {
						current = nil // read them again
					}
				}
			default:
				maybe = append(maybe, parts[i])
				if firstErr == nil {
					firstErr = r.err
				}
			}
		}
		if firstErr != nil {
			return written, maybe, firstErr
		}
		if len(again) == 0 {
			return written, maybe, nil
		}
		if attempt >= 8 || ctx.Err() != nil {
			return written, maybe, fmt.Errorf("%w: subjects kept changing, retry", cache.ErrConflict)
		}
		known = s.decodeCurrent(current, sym)
		if attempt > 0 {
			// Writers racing for the same subjects: step aside (a wrong
			// guess, the first conflict, is no race).
			time.Sleep(time.Duration(attempt) * time.Millisecond)
		}
		todo = again
	}
}

// absent is refs as if none had a record, built in sc.
func (s *Store) absent(refs []model.SubjectRef, sym symbolTable, sc *scratch) map[model.SubjectRef]*stored {
	if sc.recs == nil {
		sc.recs = make(map[model.SubjectRef]*stored, len(refs))
	}
	m := sc.recs
	sts := slices.Grow(sc.sts[:0], len(refs))[:len(refs)]
	sc.sts = sts
	// The members are substrings of one string, encoded as member does
	// (an import names thousands of subjects, mostly of one entity).
	size := 0
	for _, r := range refs {
		size += 2 + len(r.ID)
	}
	var buf strings.Builder
	buf.Grow(size)
	ends := make([]int, len(refs))
	entity, known := "", false
	var code []byte
	var varint [binary.MaxVarintLen64]byte
	for i, r := range refs {
		if i == 0 || r.Entity != entity {
			entity = r.Entity
			var c uint64
			c, known = sym.code(symEntity, entity)
			code = binary.AppendUvarint(varint[:0], c)
		}
		if known {
			buf.Write(code)
			buf.WriteString(r.ID)
		}
		ends[i] = buf.Len()
	}
	all := buf.String()
	// One empty record for all: records as read are never changed in
	// place (a write clones what it changes).
	empty := &record{score: scoreNever}
	from := 0
	for i, r := range refs {
		pl := subjectPlace(r, s.buckets)
		st := &sts[i]
		*st = stored{ref: r, tag: pl.tag, bucket: pl.bucket, member: all[from:ends[i]], rec: empty}
		from = ends[i]
		m[r] = st
	}
	return m
}

// decodeCurrent decodes the records a refused write answered with; nil
// (read them again) when there are none or one does not decode with the
// symbols at hand.
func (s *Store) decodeCurrent(current map[model.SubjectRef]*stored, sym symbolTable) map[model.SubjectRef]*stored {
	if len(current) == 0 {
		return nil
	}
	for _, st := range current {
		if st.member == "" {
			st.rec = &record{score: scoreNever}
			continue
		}
		rec, err := decodeRecord(st.ref, st.inline, st.overflow, sym)
		if err != nil {
			return nil
		}
		st.rec = rec
	}
	return current
}

// group splits subjects by tag, keeping the order of first appearance.
func groupByTag(sts []*stored) [][]*stored {
	var out [][]*stored
	at := map[int]int{}
	for _, st := range sts {
		i, ok := at[st.tag]
		if !ok {
			i = len(out)
			at[st.tag] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], st)
	}
	return out
}

// markChildren gives the children of written subjects (which live in other
// tags) fresh recompute marks and notifies their caches. It runs after the
// parents' writes: an interruption between delays a child's lifecycle
// recompute until its own due instant, it never shows anything.
func (s *Store) markChildren(ctx context.Context, children []model.SubjectRef) error {
	if len(children) == 0 {
		return nil
	}
	sym := s.sym.current()
	byTag := map[int][]model.SubjectRef{}
	var tags []int
	for _, c := range children {
		p := subjectPlace(c, s.buckets)
		if _, ok := byTag[p.tag]; !ok {
			tags = append(tags, p.tag)
		}
		byTag[p.tag] = append(byTag[p.tag], c)
	}
	calls := make([]call, 0, len(tags))
	for _, t := range tags {
		keys := []string{keyMeta(t), keyDue(t)}
		args := []any{strconv.Itoa(t), channel, refList(byTag[t])}
		for _, c := range byTag[t] {
			m, err := member(sym, c)
			if err != nil {
				continue // an entity never stored: no record to mark
			}
			p := subjectPlace(c, s.buckets)
			keys = append(keys, keyBucket(t, p.bucket))
			args = append(args, m, p.bucket)
		}
		calls = append(calls, call{markScript, keys, args})
	}
	if _, err := s.run(ctx, calls...); err != nil {
		return s.fail("mark children", err)
	}
	return nil
}

// isNil reports a missing key or field.
func isNil(err error) bool { return errors.Is(err, redis.Nil) }

// scratch holds the slabs one PutEvidence builds its write in (the
// subjects taken for absent, their map, the changes and new records of the
// first build), for the next call to reuse: an import's batches need
// thousands of each, and fresh memory cost more to touch the first time
// than to fill.
type scratch struct {
	sts  []stored
	recs map[model.SubjectRef]*stored
	chs  []change
	rs   []record
	// built: chs and rs hold a build's parts (a rebuild after a conflict
	// takes fresh ones: the first build's written parts are still needed).
	built bool
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// maxScratch is the largest batch whose slabs are kept: one huge import
// must not pin its memory for ever.
const maxScratch = 1 << 16

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

// release hands sc back once nothing built in it is referenced.
func (sc *scratch) release() {
	if cap(sc.sts) > maxScratch || cap(sc.chs) > maxScratch || len(sc.recs) > maxScratch {
		return
	}
	clear(sc.sts[:cap(sc.sts)])
	clear(sc.chs[:cap(sc.chs)])
	clear(sc.rs[:cap(sc.rs)])
	clear(sc.recs)
	sc.sts, sc.chs, sc.rs, sc.built = sc.sts[:0], sc.chs[:0], sc.rs[:0], false
	scratchPool.Put(sc)
}
