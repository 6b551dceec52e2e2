package redisstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// The evidence-key index finds a (legalisation, evidence_key) anywhere: it
// lives in the key's own tag, not the subject's, so writing a keyed record
// touches two tags. The order makes every interruption safe:
//
//  1. claim: one script per index tag points each key at its new subject
//     (keeping the record's id) and stamps the instant; a key stamped
//     recently for another subject is a conflict (two writers disagreeing
//     on whose consent it is);
//  2. a key moving to another subject is removed from the old one first;
//  3. the records are written;
//  4. the claims are released (the entries keep subject and id).
//
// An interruption after 2 leaves the record in neither subject (less
// coverage, never more); the retry of the same import finds the key
// pointing at its subject and writes it. An entry pointing to a subject
// that does not hold the record is ignored by readers (EvidenceByKey checks
// the record). A claim never released (a writer that died) stops blocking
// other subjects after claimTakeover.

// claimTakeover is how old a claim must be before a writer for another
// subject may take the key over: far longer than any write may take.
func (s *Store) claimTakeover() time.Duration {
	return max(10*time.Second, 20*s.opts.Timeout, 4*s.opts.WriteTimeout)
}

// An index value is the claim instant (6 bytes, unix ms; 0 when no write
// is in flight), the record id and the subject's member (each with a
// 2-byte length), then, while a write is in flight, the members of the
// subjects the key is moving away from (each with a 2-byte length): a
// writer taking over a dead writer's claim must clean those too.
type indexEntry struct {
	claimMS int64
	id      string
	member  string
	from    []string
}

func (e indexEntry) encode() string {
	b := make([]byte, 6, 10+len(e.id)+len(e.member))
	putScore(b, e.claimMS)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.id)))
	b = append(b, e.id...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.member)))
	b = append(b, e.member...)
	for _, f := range e.from {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return string(b)
}

func decodeIndexEntry(v string) (indexEntry, error) {
	var e indexEntry
	if len(v) < 6 {
		return e, errCorrupt
	}
	e.claimMS = readScore([]byte(v))
	rest := v[6:]
	next := func() (string, bool) {
		if len(rest) < 2 {
			return "", false
		}
		n := int(binary.BigEndian.Uint16([]byte(rest[:2])))
		if len(rest) < 2+n {
			return "", false
		}
		s := rest[2 : 2+n]
		rest = rest[2+n:]
		return s, true
	}
	var ok1, ok2 bool
	e.id, ok1 = next()
	e.member, ok2 = next()
	if !ok1 || !ok2 {
		return indexEntry{}, errCorrupt
	}
	for rest != "" {
		f, ok := next()
		if !ok {
			return indexEntry{}, errCorrupt
		}
		e.from = append(e.from, f)
	}
	return e, nil
}

// indexField is a key's field in its index bucket.
func indexField(sym symbolTable, legalisation, key string) (string, error) {
	c, ok := sym.code(symLegalisation, legalisation)
	if !ok {
		return "", fmt.Errorf("redisstore: legalisation %q has no symbol code", legalisation)
	}
	b := binary.AppendUvarint(nil, c)
	return string(append(b, key...)), nil
}

// claimScript claims keys of one tag. KEYS the index buckets; ARGV now
// (ms), takeover (ms), then per key: bucket (KEYS index), field, member,
// id for a new key. Per key it returns {status, id, previous value}:
// 1 claimed, 0 conflict (a write for another subject is in flight). The
// claim lists the subjects the key must be removed from: the previous
// holder if it is another subject, and, when the previous claim was never
// released (its writer died, or is this very subject's other writer), the
// subjects that claim was moving the key away from.
var claimScript = redis.NewScript(`local now, takeover = tonumber(ARGV[1]), tonumber(ARGV[2])
local function part(v, at)
  local n = struct.unpack('>H', v, at)
  return string.sub(v, at + 2, at + 1 + n), at + 2 + n
end
local out = {}
for i = 3, #ARGV, 4 do
  local k, f, m = KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2]
  local cur = redis.call('HGET', k, f)
  local id, status, from = ARGV[i + 3], 1, {}
  if cur then
    local at = struct.unpack('>i6', cur)
    local cm, pos
    id, pos = part(cur, 7)
    cm, pos = part(cur, pos)
    if cm ~= m then
      if at > 0 and now - at < takeover then status = 0 end
      from[#from + 1] = cm
    end
    if at > 0 then
      while pos <= #cur do
        local fm
        fm, pos = part(cur, pos)
        if fm ~= m then from[#from + 1] = fm end
      end
    end
  else
    cur = ''
  end
  if status ~= 0 then
    local v = struct.pack('>i6', now) .. struct.pack('>H', #id) .. id .. struct.pack('>H', #m) .. m
    for _, fm in ipairs(from) do v = v .. struct.pack('>H', #fm) .. fm end
    redis.call('HSET', k, f, v)
  end
  out[#out + 1] = {status, id, cur}
end
return out`)

// indexUndoScript sets index fields back: per field, if the value is
// still the one given (ours), the old one ("" deletes). KEYS the index
// buckets; ARGV per field: bucket, field, ours, old.
var indexUndoScript = redis.NewScript(`local out = {}
for i = 1, #ARGV, 4 do
  local k = KEYS[tonumber(ARGV[i])]
  if (redis.call('HGET', k, ARGV[i + 1]) or '') == ARGV[i + 2] then
    if ARGV[i + 3] == '' then redis.call('HDEL', k, ARGV[i + 1]) else redis.call('HSET', k, ARGV[i + 1], ARGV[i + 3]) end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out`)

// dropKeyScript deletes index fields that still point to the given
// record id and subject with no write in flight. KEYS the index buckets;
// ARGV per field: bucket, field, id, member.
var dropKeyScript = redis.NewScript(`for i = 1, #ARGV, 4 do
  local k = KEYS[tonumber(ARGV[i])]
  local cur = redis.call('HGET', k, ARGV[i + 1])
  if cur and struct.unpack('>i6', cur) == 0 then
    local n = struct.unpack('>H', cur, 7)
    local m = struct.unpack('>H', cur, 9 + n)
    if string.sub(cur, 9, 8 + n) == ARGV[i + 2] and string.sub(cur, 11 + n, 10 + n + m) == ARGV[i + 3] then
      redis.call('HDEL', k, ARGV[i + 1])
    end
  end
end
return 1`)

func init() { scripts = append(scripts, indexUndoScript, dropKeyScript) }

// indexOp is one index field in a per-tag index script.
type indexOp struct {
	place placement
	field string
	args  []any // after the bucket and field
}

// runIndex runs script once per tag over ops (head are the script's first
// arguments) and returns each op's reply.
func (s *Store) runIndex(ctx context.Context, script *redis.Script, head []any, ops []indexOp) ([]any, error) {
	type batch struct {
		keys []string
		kidx map[string]int
		args []any
		idx  []int
	}
	byTag := map[int]*batch{}
	var tags []int
	for i, op := range ops {
		b := byTag[op.place.tag]
		if b == nil {
			b = &batch{kidx: map[string]int{}, args: append([]any(nil), head...)}
			byTag[op.place.tag] = b
			tags = append(tags, op.place.tag)
		}
		k := keyIndex(op.place.tag, op.place.bucket)
		ki, ok := b.kidx[k]
		if !ok {
			b.keys = append(b.keys, k)
			ki = len(b.keys)
			b.kidx[k] = ki
		}
		b.args = append(b.args, ki, op.field)
		b.args = append(b.args, op.args...)
		b.idx = append(b.idx, i)
	}
	calls := make([]call, len(tags))
	for i, t := range tags {
		calls[i] = call{script, byTag[t].keys, byTag[t].args}
	}
	out, err := s.run(ctx, calls...)
	if err != nil {
		return nil, err
	}
	res := make([]any, len(ops))
	for i, t := range tags {
		rs, _ := out[i].([]any)
		for k, j := range byTag[t].idx {
			if k < len(rs) {
				res[j] = rs[k]
			}
		}
	}
	return res, nil
}

// evidenceNames are the symbols a batch's records need that t does not
// have. A batch mostly repeats a few names: a name equal to the previous
// record's is not looked up again.
func evidenceNames(t *symTab, evs []model.Evidence) []symName {
	var out []symName
	var last [3]string
	need := func(i int, kind byte, name string) {
		if name == last[i] && name != "" {
			return
		}
		last[i] = name
		if _, ok := t.code(kind, name); !ok {
			out = append(out, symName{kind, name})
		}
	}
	for _, ev := range evs {
		need(0, symEntity, ev.Subject.Entity)
		need(1, symLegalisation, ev.LegalisationID)
		if ev.CreatedBy != "" {
			need(2, symActor, ev.CreatedBy)
		}
	}
	return out
}

// newEvidenceIDs gives the records of evs without an id fresh ones of
// cache.NewID("ev-")'s form, from one random read and in one string.
func newEvidenceIDs(evs []model.Evidence) {
	const prefix, w = "ev-", 3 + 16
	n := 0
	for i := range evs {
		if evs[i].ID == "" {
			n++
		}
	}
	if n == 0 {
		return
	}
	raw := make([]byte, 8*n)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails (Go 1.24+)
	var b strings.Builder
	b.Grow(w * n)
	var h [16]byte
	for k := range n {
		hex.Encode(h[:], raw[8*k:8*k+8])
		b.WriteString(prefix)
		b.Write(h[:])
	}
	all := b.String()
	k := 0
	for i := range evs {
		if evs[i].ID == "" {
			evs[i].ID = all[k*w : (k+1)*w]
			k++
		}
	}
}

// keyTarget is one evidence key of a batch: where it goes and what the
// index said.
type keyTarget struct {
	leg, key string
	place    placement
	field    string
	subject  model.SubjectRef // the last record of the batch with the key wins
	given    string           // the id that record came with, if any
	id       string
	member   string             // the subject's bucket member
	from     []model.SubjectRef // subjects the key moves away from
	old      string             // the index value before the claim
	claimed  string             // the value claimed
}

// PutEvidence stores a batch: atomic per subject, all or nothing in the end
// (a batch over several tags whose later part fails is rolled back).
func (s *Store) PutEvidence(ctx context.Context, evs []model.Evidence, entry audit.Entry) ([]model.Evidence, error) {
	for i := range evs {
		if ev := &evs[i]; ev.Subject.Entity == "" || ev.Subject.ID == "" || ev.LegalisationID == "" {
			return nil, fmt.Errorf("put evidence: record %d: subject and legalisation_id are required", i)
		}
	}
	if len(evs) == 0 {
		return nil, nil
	}
	// A batch gets the write timeout plus time in proportion to its size:
	// 1ms per record, because concurrent imports share Redis — four
	// 10000-record calls on a busy single node got 2,700 records/s each
	// (200µs per record timed them out).
	ctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout+time.Duration(len(evs))*time.Millisecond)
	defer cancel()
	// The write is built in slabs kept from call to call; nothing built in
	// them outlives the call (the answer is out, a slice of its own).
	sc := getScratch()
	defer sc.release()
	sym, err := s.sym.intern(ctx, s.run, evidenceNames(s.sym.current(), evs))
	if err != nil {
		return nil, s.fail("put evidence: symbols", err)
	}
	met := entry.Time
	if met.IsZero() {
		met = s.opts.Clock()
	}
	out := slices.Clone(evs)
	for i := range out {
		if out[i].CommIDs != nil {
			out[i].CommIDs = slices.Clone(out[i].CommIDs)
		}
		if out[i].SubjectOrigin != nil {
			out[i].SubjectOrigin = nil
		}
	}

	// 1. Claim the keys.
	targets, order, err := s.claimKeys(ctx, sym, out)
	if err != nil {
		return nil, err
	}
	var sources []model.SubjectRef
	for _, k := range order {
		sources = append(sources, targets[k].from...)
	}
	for i := range out {
		if out[i].EvidenceKey != "" {
			out[i].ID = targets[out[i].LegalisationID+"\x00"+out[i].EvidenceKey].id
		}
	}
	newEvidenceIDs(out)
	// A batch over several tags leaves one audit entry per tag, each
	// saying how many tags the batch took and how many of its records the
	// tag holds.
	subjects := make([]model.SubjectRef, len(out))
	for i := range out {
		subjects[i] = out[i].Subject
	}
	var tagged [numTags]bool
	tags := 0
	for _, refs := range [][]model.SubjectRef{subjects, sources} {
		for _, r := range refs {
			if t := subjectPlace(r, s.buckets).tag; !tagged[t] {
				tagged[t] = true
				tags++
			}
		}
	}
	if tags > 1 {
		entry.Detail = withDetail(entry.Detail, "parts", strconv.Itoa(tags))
	}
	undo := &rollback{s: s, entry: entry}
	fail := func(err error) ([]model.Evidence, error) {
		undo.run(ctx, targets, order)
		return nil, s.fail("put evidence", err)
	}

	// 2. Keys moving away: removed from their old subjects first.
	if len(sources) > 0 {
		parts, maybe, err := s.mutate(ctx, nil, sources, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
			return s.removeMoved(recs, targets, order, entry), nil
		})
		undo.add(parts, maybe)
		if err != nil {
			return fail(err)
		}
	}

	// 3. The records.
	var children []model.SubjectRef
	// Imports mostly bring new subjects: written as if absent, without a
	// read first (the compare-and-set answers with the ones that exist).
	parts, maybe, err := s.mutateFrom(ctx, nil, subjects, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
		ps, ch := s.applyEvidence(recs, out, evs, targets, met, entry, sc)
		children = ch
		return ps, nil
	}, sc)
	undo.add(parts, maybe)
	if err != nil {
		return fail(err)
	}
	for _, ref := range subjects {
		s.local.Invalidate(ref)
	}
	for _, ref := range sources {
		s.local.Invalidate(ref)
	}

	// 4. Release the claims; drop the entries of keys a given id replaced.
	if err := s.releaseClaims(ctx, targets, order); err != nil {
		s.log.Warn("evidence stored; releasing its key claims failed (they expire)", "err", err)
	}
	if err := s.dropKeys(ctx, sym, undo.replacedKeys); err != nil {
		s.log.Warn("evidence stored; index entries of keys it replaced were not removed (readers ignore them)", "err", err)
	}
	if err := s.markChildren(ctx, children); err != nil {
		s.log.Warn("evidence stored; marking inheriting subjects for recompute failed", "err", err)
	}
	return out, nil
}

// claimKeys claims the index entries of the batch's keys.
func (s *Store) claimKeys(ctx context.Context, sym symbolTable, evs []model.Evidence) (map[string]*keyTarget, []string, error) {
	targets := map[string]*keyTarget{}
	var order []string
	for _, ev := range evs {
		if ev.EvidenceKey == "" {
			continue
		}
		k := ev.LegalisationID + "\x00" + ev.EvidenceKey
		t := targets[k]
		if t == nil {
			f, err := indexField(sym, ev.LegalisationID, ev.EvidenceKey)
			if err != nil {
				return nil, nil, err
			}
			t = &keyTarget{leg: ev.LegalisationID, key: ev.EvidenceKey, place: keyPlace(ev.LegalisationID, ev.EvidenceKey, s.buckets), field: f}
			targets[k] = t
			order = append(order, k)
		}
		t.subject, t.given = ev.Subject, ev.ID
	}
	if len(order) == 0 {
		return targets, nil, nil
	}
	ops := make([]indexOp, len(order))
	for i, k := range order {
		t := targets[k]
		m, err := member(sym, t.subject)
		if err != nil {
			return nil, nil, err
		}
		t.member = m
		id := t.given
		if id == "" {
			id = cache.NewID("ev-")
		}
		ops[i] = indexOp{t.place, t.field, []any{m, id}}
	}
	now := s.opts.Clock().UnixMilli()
	res, err := s.runIndex(ctx, claimScript, []any{now, s.claimTakeover().Milliseconds()}, ops)
	if err != nil {
		return nil, nil, s.fail("put evidence: claim keys", err)
	}
	conflict := ""
	var claimed []string
	for i, k := range order {
		t := targets[k]
		r, _ := res[i].([]any)
		if len(r) < 3 {
			return nil, nil, fmt.Errorf("put evidence: claim keys: unexpected reply %v", res[i])
		}
		status, _ := r[0].(int64)
		if status == 0 {
			if conflict == "" {
				conflict = t.key
			}
			continue
		}
		t.id, _ = r[1].(string)
		t.old, _ = r[2].(string)
		claimed = append(claimed, k)
		var from []string
		if t.old != "" {
			old, err := decodeIndexEntry(t.old)
			if err != nil {
				return nil, nil, fmt.Errorf("put evidence: index entry: %w", err)
			}
			if old.member != t.member {
				from = append(from, old.member)
			}
			if old.claimMS != 0 {
				for _, f := range old.from {
					if f != t.member {
						from = append(from, f)
					}
				}
			}
		}
		t.claimed = indexEntry{claimMS: now, id: t.id, member: t.member, from: from}.encode()
		for _, f := range from {
			ref, err := parseMember(sym, f)
			if err != nil {
				return nil, nil, fmt.Errorf("put evidence: index entry: %w", err)
			}
			t.from = append(t.from, ref)
		}
	}
	if conflict != "" {
		// Nothing of the batch is written: the claims made go back.
		s.undoClaims(ctx, targets, claimed)
		return nil, nil, fmt.Errorf("put evidence: %w: evidence key %q is being written for another subject concurrently, retry", cache.ErrConflict, conflict)
	}
	return targets, order, nil
}

// releaseClaims ends the claims of a written batch.
func (s *Store) releaseClaims(ctx context.Context, targets map[string]*keyTarget, order []string) error {
	ops := make([]indexOp, 0, len(order))
	for _, k := range order {
		t := targets[k]
		if t.claimed != "" {
			ops = append(ops, indexOp{t.place, t.field, []any{t.claimed, indexEntry{id: t.id, member: t.member}.encode()}})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	_, err := s.runIndex(ctx, indexUndoScript, nil, ops)
	return err
}

// undoClaims sets claimed index entries back to what they were.
func (s *Store) undoClaims(ctx context.Context, targets map[string]*keyTarget, order []string) {
	var ops []indexOp
	for _, k := range order {
		t := targets[k]
		if t.claimed != "" {
			ops = append(ops, indexOp{t.place, t.field, []any{t.claimed, t.old}})
		}
	}
	if len(ops) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*s.opts.WriteTimeout)
	defer cancel()
	if _, err := s.runIndex(ctx, indexUndoScript, nil, ops); err != nil {
		s.log.Warn("key claims of a failed write not set back (they expire)", "err", err)
	}
}

// removeMoved builds the parts removing moved keys' records from their old
// subjects.
func (s *Store) removeMoved(recs map[model.SubjectRef]*stored, targets map[string]*keyTarget, order []string, entry audit.Entry) []*part {
	byTag := map[int]*part{}
	var parts []*part
	for _, k := range order {
		t := targets[k]
		for _, from := range t.from {
			s.removeKey(recs[from], t, byTag, &parts, entry)
		}
	}
	return parts
}

// removeKey removes t's record from the subject st, adding to the parts.
func (s *Store) removeKey(st *stored, t *keyTarget, byTag map[int]*part, parts *[]*part, entry audit.Entry) {
	if st == nil {
		return
	}
	var ch *change
	p := byTag[st.tag]
	if p != nil {
		for _, c := range p.changes {
			if c.cur == st {
				ch = c
			}
		}
	}
	r := st.rec
	if ch != nil {
		r = ch.rec
	}
	i := slices.IndexFunc(r.evidence, func(e model.Evidence) bool {
		return e.LegalisationID == t.leg && e.EvidenceKey == t.key
	})
	if i < 0 {
		return
	}
	if ch == nil {
		ch = &change{cur: st, rec: cloneRecord(st.rec), mark: true}
		if p == nil {
			e := entry
			if e.Detail["parts"] != "" {
				e.Detail = withDetail(e.Detail, "part_records", "0")
			}
			p = &part{tag: st.tag, entry: &e, evcount: map[string]int64{}}
			byTag[st.tag] = p
			*parts = append(*parts, p)
		}
		p.changes = append(p.changes, ch)
	}
	ch.rec.evidence = slices.Delete(ch.rec.evidence, i, i+1)
	p.evcount[t.leg]--
}

// applyEvidence builds the parts writing the batch's records, and lists the
// children of the subjects written (they inherit the change).
func (s *Store) applyEvidence(recs map[model.SubjectRef]*stored, out, in []model.Evidence, targets map[string]*keyTarget, met time.Time, entry audit.Entry, sc *scratch) ([]*part, []model.SubjectRef) {
	// An import's batch is thousands of subjects: their changes and new
	// records come from two slabs (sc's, the first time), and a subject's
	// change is found through its stored value (recs hashed the subjects
	// once) rather than a map.
	n := min(len(recs), len(out))
	var chs []change
	var rs []record
	if sc != nil && !sc.built {
		sc.built = true
		chs, rs = slices.Grow(sc.chs[:0], n), slices.Grow(sc.rs[:0], n)
		sc.chs, sc.rs = chs, rs
	} else {
		chs, rs = make([]change, 0, n), make([]record, 0, n)
	}
	order := make([]*change, 0, n)
	defer func() {
		for _, c := range order {
			c.cur.building = nil
		}
	}()
	for i := range out {
		ev := &out[i]
		st := recs[ev.Subject]
		if st == nil {
			continue // not this attempt's subject (a re-read of other parts)
		}
		c := st.building
		if c == nil {
			rs = append(rs, record{})
			r := &rs[len(rs)-1]
			cloneRecordInto(r, st.rec)
			chs = append(chs, change{cur: st, rec: r, mark: true})
			c = &chs[len(chs)-1]
			st.building = c
			order = append(order, c)
		}
		if so := in[i].SubjectOrigin; so != nil {
			recordOrigin(c.rec, *so, cache.OriginStated)
		} else {
			recordOrigin(c.rec, met, cache.OriginObserved)
		}
		if ev.EvidenceKey != "" {
			t := targets[ev.LegalisationID+"\x00"+ev.EvidenceKey]
			if t.subject != ev.Subject {
				continue // a later record of the batch moved the key on
			}
		}
		c.records++
		r := c.rec
		// One record per (legalisation, key) in a subject, whatever the index
		// says; a given id replaces its record.
		j := slices.IndexFunc(r.evidence, func(e model.Evidence) bool {
			return e.ID == ev.ID || ev.EvidenceKey != "" && e.LegalisationID == ev.LegalisationID && e.EvidenceKey == ev.EvidenceKey
		})
		switch {
		case j >= 0:
			if c.shared {
				r.evidence, c.shared = slices.Clone(r.evidence), false
			}
			r.evidence[j] = *ev
		case len(r.evidence) == 0:
			// The subject's only record so far: the batch's own copy, not a
			// second one (its capacity of one makes an append copy it).
			r.evidence, c.shared = out[i:i+1:i+1], true
		default:
			r.evidence, c.shared = append(r.evidence, *ev), false
		}
	}
	byTag := map[int]*part{}
	var parts []*part
	var children []model.SubjectRef
	// Each part's changes counted first: appends growing dozens of slices
	// cost more than the count.
	var perTag [numTags]int32
	for _, c := range order {
		perTag[c.cur.tag]++
	}
	for _, c := range order {
		slices.SortFunc(c.rec.evidence, func(a, b model.Evidence) int { return cmp.Compare(a.ID, b.ID) })
		// Two records of the batch may share an id: the last one stays.
		c.rec.evidence = slices.CompactFunc(c.rec.evidence, func(a, b model.Evidence) bool { return a.ID == b.ID })
		p := byTag[c.cur.tag]
		if p == nil {
			e := entry
			p = &part{tag: c.cur.tag, entry: &e, evcount: map[string]int64{}, changes: make([]*change, 0, perTag[c.cur.tag])}
			byTag[c.cur.tag] = p
			parts = append(parts, p)
		}
		p.changes = append(p.changes, c)
		for i := range c.cur.rec.evidence {
			p.evcount[c.cur.rec.evidence[i].LegalisationID]--
		}
		for i := range c.rec.evidence {
			p.evcount[c.rec.evidence[i].LegalisationID]++
		}
		p.records += c.records
		children = append(children, c.rec.children...)
	}
	if entry.Detail["parts"] != "" {
		for _, p := range parts {
			p.entry.Detail = withDetail(p.entry.Detail, "part_records", strconv.Itoa(p.records))
		}
	}
	return parts, children
}

func withDetail(d map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(d)+1)
	for a, b := range d {
		out[a] = b
	}
	out[k] = v
	return out
}

// dropKeys deletes the index entries of keyed records that left their
// subject (revoked, or replaced through their id by a record of another
// key), if the entries still point to them.
func (s *Store) dropKeys(ctx context.Context, sym symbolTable, evs []model.Evidence) error {
	var ops []indexOp
	for _, ev := range evs {
		f, err := indexField(sym, ev.LegalisationID, ev.EvidenceKey)
		if err != nil {
			continue
		}
		m, err := member(sym, ev.Subject)
		if err != nil {
			continue
		}
		ops = append(ops, indexOp{keyPlace(ev.LegalisationID, ev.EvidenceKey, s.buckets), f, []any{ev.ID, m}})
	}
	if len(ops) == 0 {
		return nil
	}
	_, err := s.runIndex(ctx, dropKeyScript, nil, ops)
	return err
}

// rollback undoes the parts of a failed multi-part write that ran (or may
// have: their answer was lost): each record still as written goes back to
// what it was, with an audit entry "<action>.rollback"; the key claims go
// back to what they were. Tags are rolled back independently, so that a
// tag whose master is unreachable does not keep the others from it.
type rollback struct {
	s            *Store
	entry        audit.Entry
	parts        []*part
	maybe        []*part
	replacedKeys []model.Evidence
}

func (u *rollback) add(written, maybe []*part) {
	u.parts = append(u.parts, written...)
	u.maybe = append(u.maybe, maybe...)
	for _, p := range written {
		for _, c := range p.changes {
			// Keys whose record a given id replaced under another key.
			for _, old := range c.cur.rec.evidence {
				if old.EvidenceKey == "" {
					continue
				}
				for _, nw := range c.rec.evidence {
					if nw.ID == old.ID && (nw.LegalisationID != old.LegalisationID || nw.EvidenceKey != old.EvidenceKey) {
						u.replacedKeys = append(u.replacedKeys, old)
					}
				}
			}
		}
	}
}

func (u *rollback) run(ctx context.Context, targets map[string]*keyTarget, order []string) {
	s := u.s
	// A fresh context: the write's may be what ran out.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*s.opts.WriteTimeout)
	defer cancel()
	sym := s.sym.current()
	byTag := map[int]map[model.SubjectRef]*change{}
	for _, p := range append(slices.Clone(u.parts), u.maybe...) {
		m := byTag[p.tag]
		if m == nil {
			m = map[model.SubjectRef]*change{}
			byTag[p.tag] = m
		}
		for _, c := range p.changes {
			m[c.cur.ref] = c
		}
	}
	// One rollback per master, in parallel: a master that cannot be
	// reached fails alone.
	byNode := map[string][]int{}
	for tag := range byTag {
		addr := "single"
		if node, err := s.nodeFor(ctx, keyMeta(tag)); err == nil {
			addr = node.Options().Addr
		}
		byNode[addr] = append(byNode[addr], tag)
	}
	var wg sync.WaitGroup
	for _, tags := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := map[model.SubjectRef]*change{}
			var refs []model.SubjectRef
			for _, tag := range tags {
				for r, c := range byTag[tag] {
					want[r] = c
					refs = append(refs, r)
				}
			}
			_, _, err := s.mutate(ctx, nil, refs, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
				parts := map[int]*part{}
				var out []*part
				for ref, st := range recs {
					c := want[ref]
					if !sameBody(st, c.rec, sym) {
						continue // not written, or changed since: leave it
					}
					p := parts[st.tag]
					if p == nil {
						e := u.entry
						e.Action += ".rollback"
						p = &part{tag: st.tag, entry: &e, evcount: map[string]int64{}}
						parts[st.tag] = p
						out = append(out, p)
					}
					p.changes = append(p.changes, &change{cur: st, rec: c.cur.rec, mark: true})
					for _, ev := range st.rec.evidence {
						p.evcount[ev.LegalisationID]--
					}
					for _, ev := range c.cur.rec.evidence {
						p.evcount[ev.LegalisationID]++
					}
				}
				return out, nil
			})
			if err != nil {
				s.log.Error("a failed write could not be rolled back on one master; the subjects named in its audit entries may hold part of it",
					"action", u.entry.Action, "tags", len(tags), "err", err)
			}
			for _, r := range refs {
				s.local.Invalidate(r)
			}
		}()
	}
	wg.Wait()
	s.undoClaims(ctx, targets, order)
}

// RevokeEvidence deletes one evidence record of a subject.
func (s *Store) RevokeEvidence(ctx context.Context, ref model.SubjectRef, id string, entry audit.Entry) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var revoked model.Evidence
	var children []model.SubjectRef
	_, _, err := s.mutate(ctx, entityNames(ref), []model.SubjectRef{ref}, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
		st := recs[ref]
		i := slices.IndexFunc(st.rec.evidence, func(e model.Evidence) bool { return e.ID == id })
		if i < 0 {
			return nil, cache.ErrNotFound
		}
		revoked = st.rec.evidence[i]
		r := cloneRecord(st.rec)
		r.evidence = slices.Delete(r.evidence, i, i+1)
		children = r.children
		e := entry
		return []*part{{tag: st.tag, changes: []*change{{cur: st, rec: r, mark: true}}, entry: &e,
			evcount: map[string]int64{revoked.LegalisationID: -1}}}, nil
	})
	if err != nil {
		return s.fail("revoke evidence", err)
	}
	s.local.Invalidate(ref)
	if revoked.EvidenceKey != "" {
		if err := s.dropKeys(ctx, s.sym.current(), []model.Evidence{revoked}); err != nil {
			s.log.Warn("evidence revoked; its key's index entry was not removed (readers ignore it)", "err", err)
		}
	}
	if err := s.markChildren(ctx, children); err != nil {
		s.log.Warn("evidence revoked; marking inheriting subjects for recompute failed", "err", err)
	}
	return nil
}

// RenewEvidence moves the origin of existing evidence records to at.
func (s *Store) RenewEvidence(ctx context.Context, ref model.SubjectRef, ids []string, at time.Time, entry audit.Entry) ([]model.Evidence, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("renew evidence: %w", cache.ErrNotFound)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	at = at.UTC()
	var out []model.Evidence
	var children []model.SubjectRef
	_, _, err := s.mutate(ctx, entityNames(ref), []model.SubjectRef{ref}, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
		st := recs[ref]
		r := cloneRecord(st.rec)
		out = out[:0]
		for _, id := range ids {
			i := slices.IndexFunc(r.evidence, func(e model.Evidence) bool { return e.ID == id })
			if i < 0 {
				continue // revoked meanwhile: a renewal never recreates
			}
			if ev := &r.evidence[i]; ev.RenewedAt == nil || ev.RenewedAt.Before(at) {
				t := at
				ev.RenewedAt = &t
			}
			out = append(out, r.evidence[i])
		}
		if len(out) == 0 {
			return nil, cache.ErrNotFound
		}
		children = r.children
		e := entry
		return []*part{{tag: st.tag, changes: []*change{{cur: st, rec: r, mark: true}}, entry: &e}}, nil
	})
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			return nil, fmt.Errorf("renew evidence: %w", err)
		}
		return nil, s.fail("renew evidence", err)
	}
	s.local.Invalidate(ref)
	if err := s.markChildren(ctx, children); err != nil {
		s.log.Warn("evidence renewed; marking inheriting subjects for recompute failed", "err", err)
	}
	return out, nil
}

// EvidenceByKey finds evidence by its legalisation and evidence_key.
func (s *Store) EvidenceByKey(ctx context.Context, legalisationID, evidenceKey string) (model.Evidence, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	notFound := fmt.Errorf("evidence by key: %w", cache.ErrNotFound)
	sym := s.sym.current()
	f, err := indexField(sym, legalisationID, evidenceKey)
	if err != nil {
		if sym, err = s.sym.load(ctx, s.c); err != nil {
			return model.Evidence{}, s.fail("evidence by key", err)
		}
		if f, err = indexField(sym, legalisationID, evidenceKey); err != nil {
			return model.Evidence{}, notFound
		}
	}
	pl := keyPlace(legalisationID, evidenceKey, s.buckets)
	v, err := s.c.HGet(ctx, keyIndex(pl.tag, pl.bucket), f).Result()
	if isNil(err) {
		return model.Evidence{}, notFound
	}
	if err != nil {
		return model.Evidence{}, s.fail("evidence by key", err)
	}
	e, err := decodeIndexEntry(v)
	if err != nil {
		return model.Evidence{}, fmt.Errorf("evidence by key: %w", err)
	}
	ref, err := parseMember(sym, e.member)
	if err != nil {
		return model.Evidence{}, fmt.Errorf("evidence by key: %w", err)
	}
	sts, err := s.readRecords(ctx, []model.SubjectRef{ref})
	if err != nil {
		return model.Evidence{}, s.fail("evidence by key", err)
	}
	for _, ev := range sts[0].rec.evidence {
		if ev.ID == e.id && ev.LegalisationID == legalisationID && ev.EvidenceKey == evidenceKey {
			return ev, nil
		}
	}
	return model.Evidence{}, notFound
}

// EvidenceCounts counts stored evidence per legalisation over every tag.
func (s *Store) EvidenceCounts(ctx context.Context) (map[string]int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	p := s.c.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, numTags)
	for t := range numTags {
		cmds[t] = p.HGetAll(ctx, keyEvCount(t))
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.fail("evidence counts", err)
	}
	out := map[string]int{}
	for _, c := range cmds {
		for leg, v := range c.Val() {
			if n, err := strconv.Atoi(v); err == nil {
				out[leg] += n
			}
		}
	}
	for leg, n := range out {
		if n <= 0 {
			delete(out, leg)
		}
	}
	return out, nil
}
