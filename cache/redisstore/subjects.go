package redisstore

import (
	"context"
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

// stored is a subject's record as read, with where it lives.
type stored struct {
	ref         model.SubjectRef
	tag, bucket int
	// member is the subject's field in its bucket; "" when its entity has
	// no symbol code yet (nothing of the entity was ever stored).
	member           string
	inline, overflow string
	rec              *record
	// building is applyEvidence's change of the subject while it builds
	// (nil otherwise): a field, not a map from subject to change.
	building *change
}

// readRecords reads the records of refs in one pipelined round trip (a
// subject's bucket field and overflow key: both, so that a large record
// costs no second trip).
func (s *Store) readRecords(ctx context.Context, refs []model.SubjectRef) ([]*stored, error) {
	return s.readRecordsWith(ctx, refs, true)
}

// readRecordsWith reads the overflow keys in the same round trip when
// withOverflow is set, else only for the records whose bucket holds a
// stub, in a second one (writes, which mostly meet small or new records).
func (s *Store) readRecordsWith(ctx context.Context, refs []model.SubjectRef, withOverflow bool) ([]*stored, error) {
	return s.readRecordsFrom(ctx, refs, withOverflow, nil)
}

// readRecordsFrom is readRecordsWith reading through raw (the miss
// batcher's own connection, always with the overflow keys) when not nil.
func (s *Store) readRecordsFrom(ctx context.Context, refs []model.SubjectRef, withOverflow bool, raw *rawReader) ([]*stored, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	sym := s.sym.current()
	for _, r := range refs {
		if _, ok := sym.code(symEntity, r.Entity); !ok {
			// Another sidecar may have stored the first subject of this
			// entity since the table was loaded.
			t, err := s.sym.load(ctx, s.c)
			if err != nil {
				return nil, err
			}
			sym = t
			break
		}
	}
	out := make([]*stored, len(refs))
	sts := make([]stored, len(refs))
	for i, r := range refs {
		pl := subjectPlace(r, s.buckets)
		st := &sts[i]
		st.ref, st.tag, st.bucket = r, pl.tag, pl.bucket
		out[i] = st
		m, err := member(sym, r)
		if err != nil {
			st.rec = &record{score: scoreNever}
			continue
		}
		st.member = m
	}
	var err error
	if raw != nil {
		err = s.fetchRaw(ctx, out, raw)
	} else {
		err = s.fetch(ctx, out, withOverflow)
	}
	if err != nil {
		return nil, err
	}
	reloaded := false
	for _, st := range out {
		if st.member == "" {
			continue
		}
		rec, err := decodeRecord(st.ref, st.inline, st.overflow, sym)
		if errors.Is(err, errUnknownSymbol) && !reloaded {
			if sym, err = s.sym.load(ctx, s.c); err != nil {
				return nil, err
			}
			reloaded = true
			rec, err = decodeRecord(st.ref, st.inline, st.overflow, sym)
		}
		if err != nil {
			return nil, fmt.Errorf("decode subject record: %w", err)
		}
		st.rec = rec
	}
	return out, nil
}

// fetch fills inline and overflow of the records with a member through
// go-redis, in one pipelined round trip (two when !withOverflow and some
// bucket holds a stub).
func (s *Store) fetch(ctx context.Context, out []*stored, withOverflow bool) error {
	p := s.c.Pipeline()
	type cmds struct{ in, ov *redis.StringCmd }
	cs := make([]cmds, len(out))
	queued := 0
	for i, st := range out {
		if st.member == "" {
			continue
		}
		cs[i].in = p.HGet(ctx, keyBucket(st.tag, st.bucket), st.member)
		if withOverflow {
			cs[i].ov = p.Get(ctx, keyOverflow(st.tag, st.member))
		}
		queued++
	}
	if queued == 0 {
		return nil
	}
	if _, err := p.Exec(ctx); err != nil && !isNil(err) {
		return err
	}
	if !withOverflow {
		var p2 redis.Pipeliner
		for i, st := range out {
			if st.member == "" {
				continue
			}
			if v := cs[i].in.Val(); len(v) > scoreLen && v[scoreLen]&flagStub != 0 {
				if p2 == nil {
					p2 = s.c.Pipeline()
				}
				cs[i].ov = p2.Get(ctx, keyOverflow(st.tag, st.member))
			}
		}
		if p2 != nil {
			if _, err := p2.Exec(ctx); err != nil && !isNil(err) {
				return err
			}
		}
	}
	for i, st := range out {
		if st.member == "" {
			continue
		}
		st.inline = cs[i].in.Val()
		if cs[i].ov != nil {
			st.overflow = cs[i].ov.Val()
		}
	}
	return nil
}

// fetchRaw is fetch (with the overflow keys) through raw: the keys are
// written into its command buffer, not built as strings.
func (s *Store) fetchRaw(ctx context.Context, out []*stored, raw *rawReader) error {
	b := raw.buf[:0]
	n := 0
	var num [20]byte
	for _, st := range out {
		if st.member == "" {
			continue
		}
		b = appendArray(b, 3)
		b = appendBulk(b, "HGET")
		b = appendBulk(b, tagPrefix[st.tag], "b:", string(strconv.AppendInt(num[:0], int64(st.bucket), 10)))
		b = appendBulk(b, st.member)
		b = appendArray(b, 2)
		b = appendBulk(b, "GET")
		b = appendBulk(b, tagPrefix[st.tag], "o:", st.member)
		n += 2
	}
	raw.buf = b
	if n == 0 {
		return nil
	}
	vals, err := raw.do(ctx, b, n)
	if err != nil {
		return err
	}
	j := 0
	for _, st := range out {
		if st.member == "" {
			continue
		}
		st.inline, st.overflow = vals[j], vals[j+1]
		j += 2
	}
	return nil
}

// readMap is readRecords keyed by subject (refs may repeat).
func (s *Store) readMap(ctx context.Context, refs []model.SubjectRef) (map[model.SubjectRef]*stored, error) {
	return s.readMapWith(ctx, refs, true)
}

func (s *Store) readMapWith(ctx context.Context, refs []model.SubjectRef, withOverflow bool) (map[model.SubjectRef]*stored, error) {
	return s.readMapFrom(ctx, refs, withOverflow, nil)
}

// readMapFrom is readMapWith through raw when not nil (readRecordsFrom).
func (s *Store) readMapFrom(ctx context.Context, refs []model.SubjectRef, withOverflow bool, raw *rawReader) (map[model.SubjectRef]*stored, error) {
	uniq := make([]model.SubjectRef, 0, len(refs))
	seen := make(map[model.SubjectRef]bool, len(refs))
	for _, r := range refs {
		if !seen[r] {
			seen[r] = true
			uniq = append(uniq, r)
		}
	}
	sts, err := s.readRecordsFrom(ctx, uniq, withOverflow, raw)
	if err != nil {
		return nil, err
	}
	m := make(map[model.SubjectRef]*stored, len(sts))
	for _, st := range sts {
		m[st.ref] = st
	}
	return m, nil
}

// subjectRecord is the record as the cache package sees it, with the
// origin resolved: PutSubject's when set, else the recorded one, else zero
// (OriginNone).
func subjectRecord(ref model.SubjectRef, r *record) (cache.SubjectRecord, cache.OriginSource) {
	rec := cache.SubjectRecord{Subject: model.Subject{Ref: ref, Origin: r.seen}, Evidence: r.evidence, Restriction: r.restriction}
	src := r.seenSrc
	if r.seen.IsZero() {
		src = cache.OriginNone
	}
	if r.meta != nil {
		rec.Subject.Parent = r.meta.Parent
		if !r.meta.Origin.IsZero() {
			rec.Subject.Origin = r.meta.Origin
			src = cache.OriginSet
		}
		rec.Known = true
	}
	if len(r.evidence) > 0 {
		rec.Known = true
	}
	return rec, src
}

func parentOf(r *record) *model.SubjectRef {
	if r.meta != nil {
		return r.meta.Parent
	}
	return nil
}

// parentHints remembers the parents of recently read subjects, so that a
// miss for a child fetches its parent's evidence in the same round trip.
// A wrong hint (the parent changed) costs a second trip, never a wrong
// answer: the child's own record says who its parent is.
type parentHints struct {
	mu  sync.Mutex
	m   map[model.SubjectRef]model.SubjectRef
	max int
}

func (h *parentHints) init(max int) {
	h.m = map[model.SubjectRef]model.SubjectRef{}
	h.max = max
}

func (h *parentHints) get(ref model.SubjectRef) (model.SubjectRef, bool) {
	h.mu.Lock()
	p, ok := h.m[ref]
	h.mu.Unlock()
	return p, ok
}

func (h *parentHints) put(ref, parent model.SubjectRef) {
	h.mu.Lock()
	if len(h.m) >= h.max {
		clear(h.m) // bounded; a few misses rebuild it
	}
	h.m[ref] = model.SubjectRef{Entity: strings.Clone(parent.Entity), ID: strings.Clone(parent.ID)}
	h.mu.Unlock()
}

// Facts returns the subject's computed state at now.
func (s *Store) Facts(ctx context.Context, ref model.SubjectRef, now time.Time) (cache.Facts, error) {
	var f cache.Facts
	if s.CachedFactsTo(ref, now, &f) {
		return f, nil
	}
	if !cache.IsAdmin(ctx) && !s.unbatched {
		return s.factsMiss(ctx, ref, now)
	}
	out := make([]cache.Facts, 1)
	if err := s.loadFacts(ctx, []model.SubjectRef{ref}, []int{0}, out, []time.Time{now}, nil); err != nil {
		return cache.Facts{}, err
	}
	return out[0], nil
}

// CachedFactsTo writes ref's facts into dst when the local cache serves
// them at now (a hit, counted and marked stale as Facts does), without a
// round trip, and reports whether it did; on a miss dst is unchanged. ref
// is not retained: a caller may pass an id that aliases a buffer it
// reuses. Written, not returned: see memstore's.
func (s *Store) CachedFactsTo(ref model.SubjectRef, now time.Time, dst *cache.Facts) bool {
	ok, stale := s.local.Servable()
	if !ok {
		return false
	}
	if !s.local.GetTo(ref, now, dst) {
		return false
	}
	s.local.CountHit()
	if stale {
		dst.Stale = true
		s.local.CountStale()
	}
	return true
}

// Cached reports whether ref's facts are served from the local cache now
// (no round trip): the gate reads a list's subjects ahead, together, only
// when they are not.
func (s *Store) Cached(ref model.SubjectRef, now time.Time) bool {
	if ok, _ := s.local.Servable(); !ok {
		return false
	}
	_, hit := s.local.Get(ref, now)
	return hit
}

// FactsMany returns the facts of every subject in refs, in order: the ones
// cached locally at once, all the others in one pipelined round trip (two
// when some inherit from a parent not read before).
func (s *Store) FactsMany(ctx context.Context, refs []model.SubjectRef, now time.Time) ([]cache.Facts, error) {
	out := make([]cache.Facts, len(refs))
	var miss []int
	ok, stale := s.local.Servable()
	for i, ref := range refs {
		if ok {
			if f, hit := s.local.Get(ref, now); hit {
				s.local.CountHit()
				if stale {
					f.Stale = true
					s.local.CountStale()
				}
				out[i] = f
				continue
			}
		}
		miss = append(miss, i)
	}
	if len(miss) == 0 {
		return out, nil
	}
	var raw *rawReader
	if !cache.IsAdmin(ctx) {
		raw = s.raw // when the batcher is not using it
	}
	if err := s.loadFacts(ctx, refs, miss, out, []time.Time{now}, raw); err != nil {
		return nil, err
	}
	return out, nil
}

// loadFacts computes out[i] for each i in miss from the store, at
// nows[i] (at nows[0] for every i when nows has one instant), reading
// through raw when it is not nil and free (else through go-redis).
func (s *Store) loadFacts(ctx context.Context, refs []model.SubjectRef, miss []int, out []cache.Facts, nows []time.Time, raw *rawReader) error {
	for range miss {
		s.local.CountMiss()
	}
	if raw != nil {
		if raw.mu.TryLock() {
			defer raw.mu.Unlock()
		} else {
			raw = nil
		}
	}
	err := s.loadFactsFromStore(ctx, refs, miss, out, nows, raw)
	if errors.Is(err, cache.ErrUnavailable) {
		s.local.CountUnavailable()
	}
	return err
}

func (s *Store) loadFactsFromStore(ctx context.Context, refs []model.SubjectRef, miss []int, out []cache.Facts, nows []time.Time, raw *rawReader) error {
	bound := s.opts.Timeout
	if cache.IsAdmin(ctx) {
		bound = s.opts.WriteTimeout
	}
	// One bound for the registers' round trip (none cached) and the
	// records': a decision reading its batch itself (canLead) is sure to be
	// done by its deadline only if the whole read is.
	ctx, cancel := context.WithTimeout(ctx, bound+time.Duration(len(miss))*missAllowance)
	defer cancel()
	ix, err := s.Registers(ctx)
	if err != nil {
		return err
	}
	// After Registers: caching a new index bumps the generation. A register
	// change after this point is caught by the entries' version check.
	gen := s.local.Gen()
	// The subjects and the parents hinted for them, in one round trip.
	want := make([]model.SubjectRef, 0, 2*len(miss))
	for _, i := range miss {
		want = append(want, refs[i])
		if p, ok := s.hints.get(refs[i]); ok {
			want = append(want, p)
		}
	}
	recs, err := s.readMapFrom(ctx, want, true, raw)
	if err != nil {
		return s.fail("facts", err)
	}
	// Parents nobody hinted: a second round trip.
	var more []model.SubjectRef
	for _, i := range miss {
		if p := parentOf(recs[refs[i]].rec); p != nil {
			if _, ok := recs[*p]; !ok {
				more = append(more, *p)
			}
		}
	}
	if len(more) > 0 {
		m, err := s.readMapFrom(ctx, more, true, raw)
		if err != nil {
			return s.fail("facts: parents", err)
		}
		for k, v := range m {
			recs[k] = v
		}
	}
	for _, i := range miss {
		st := recs[refs[i]]
		rec, src := subjectRecord(refs[i], st.rec)
		var inherited []model.Evidence
		parent := rec.Subject.Parent
		if parent != nil {
			inherited = recs[*parent].rec.evidence
			s.hints.put(refs[i], *parent)
		}
		now := nows[0]
		if len(nows) > 1 {
			now = nows[i]
		}
		f := cache.ComputeFacts(ix, rec, src, inherited, now)
		s.local.Put(refs[i], parent, f, now, gen)
		out[i] = f
	}
	return nil
}

// Subject returns everything stored for ref.
func (s *Store) Subject(ctx context.Context, ref model.SubjectRef) (cache.SubjectRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	sts, err := s.readRecords(ctx, []model.SubjectRef{ref})
	if err != nil {
		return cache.SubjectRecord{}, s.fail("subject", err)
	}
	rec, _ := subjectRecord(ref, sts[0].rec)
	return rec, nil
}

// Snapshots reads the subjects in one round trip, and the parents not among
// them in a second one.
func (s *Store) Snapshots(ctx context.Context, refs []model.SubjectRef) ([]cache.Snapshot, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout+time.Duration(len(refs))*100*time.Microsecond)
	defer cancel()
	recs, err := s.readMap(ctx, refs)
	if err != nil {
		return nil, s.fail("snapshots", err)
	}
	var more []model.SubjectRef
	for _, r := range refs {
		if p := parentOf(recs[r].rec); p != nil {
			if _, ok := recs[*p]; !ok {
				more = append(more, *p)
			}
		}
	}
	parents, err := s.readMap(ctx, more)
	if err != nil {
		return nil, s.fail("snapshots: parents", err)
	}
	out := make([]cache.Snapshot, len(refs))
	for i, r := range refs {
		st := recs[r]
		rec, src := subjectRecord(r, st.rec)
		out[i] = cache.Snapshot{Record: rec, Origin: src, Applied: st.rec.applied}
		if p := rec.Subject.Parent; p != nil {
			ps := recs[*p]
			if ps == nil {
				ps = parents[*p]
			}
			out[i].Inherited = ps.rec.evidence
		}
	}
	return out, nil
}

// Children lists the subjects whose parent is ref.
func (s *Store) Children(ctx context.Context, ref model.SubjectRef) ([]model.SubjectRef, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	sts, err := s.readRecords(ctx, []model.SubjectRef{ref})
	if err != nil {
		return nil, s.fail("children", err)
	}
	out := slices.Clone(sts[0].rec.children)
	slices.SortFunc(out, func(a, b model.SubjectRef) int {
		return strings.Compare(cache.SubjectMember(a), cache.SubjectMember(b))
	})
	return out, nil
}

func cloneRecord(r *record) *record {
	c := new(record)
	cloneRecordInto(c, r)
	return c
}

// cloneRecordInto is cloneRecord into dst (a write of many subjects
// allocates their records together).
func cloneRecordInto(dst, r *record) {
	*dst = *r
	if r.meta != nil {
		m := *r.meta
		if m.Parent != nil {
			p := *m.Parent
			m.Parent = &p
		}
		dst.meta = &m
	}
	dst.children = slices.Clone(r.children)
	dst.evidence = slices.Clone(r.evidence)
}

func entityNames(refs ...model.SubjectRef) []symName {
	out := make([]symName, 0, len(refs))
	for _, r := range refs {
		out = append(out, symName{symEntity, r.Entity})
	}
	return out
}

// PutSubject creates or replaces a subject's metadata. The new parent
// learns of its child before the child names it, and the old parent
// forgets it after: an interruption leaves a parent listing a child that
// is not its own (a spurious recompute mark), never a child its parent
// does not know.
func (s *Store) PutSubject(ctx context.Context, sub model.Subject, entry audit.Entry) error {
	if sub.Ref.Entity == "" || sub.Ref.ID == "" {
		return fmt.Errorf("put subject: entity and id are required")
	}
	if sub.Parent != nil && (sub.Parent.Entity == "" || sub.Parent.ID == "") {
		return fmt.Errorf("put subject: the parent needs entity and id")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	names := entityNames(sub.Ref)
	if sub.Parent != nil {
		names = append(names, entityNames(*sub.Parent)...)
	}
	var oldParent *model.SubjectRef
	if sub.Parent != nil {
		if err := s.linkChild(ctx, *sub.Parent, sub.Ref, true); err != nil {
			return err
		}
	}
	_, _, err := s.mutate(ctx, names, []model.SubjectRef{sub.Ref}, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
		st := recs[sub.Ref]
		r := cloneRecord(st.rec)
		oldParent = parentOf(st.rec)
		m := model.Subject{Ref: sub.Ref, Origin: sub.Origin.UTC()}
		if sub.Origin.IsZero() {
			m.Origin = time.Time{}
		}
		if sub.Parent != nil {
			p := *sub.Parent
			m.Parent = &p
		}
		r.meta = &m
		e := entry
		return []*part{{tag: st.tag, changes: []*change{{cur: st, rec: r, mark: true}}, entry: &e}}, nil
	})
	if err != nil {
		return s.fail("put subject", err)
	}
	s.local.Invalidate(sub.Ref)
	if oldParent != nil && (sub.Parent == nil || *oldParent != *sub.Parent) {
		if err := s.linkChild(ctx, *oldParent, sub.Ref, false); err != nil {
			return err
		}
	}
	return nil
}

// linkChild adds child to (or removes it from) parent's children list. Not
// audited: it is part of the child's PutSubject, which is.
func (s *Store) linkChild(ctx context.Context, parent, child model.SubjectRef, add bool) error {
	_, _, err := s.mutate(ctx, entityNames(parent, child), []model.SubjectRef{parent}, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
		st := recs[parent]
		has := slices.Contains(st.rec.children, child)
		if has == add {
			return nil, nil
		}
		r := cloneRecord(st.rec)
		if add {
			r.children = append(r.children, child)
		} else {
			r.children = slices.DeleteFunc(r.children, func(c model.SubjectRef) bool { return c == child })
		}
		// The parent's own facts do not change: no mark.
		return []*part{{tag: st.tag, changes: []*change{{cur: st, rec: r}}}}, nil
	})
	if err != nil {
		return s.fail("put subject: children of the parent", err)
	}
	return nil
}

// RecordOrigin records the subject's origin unless a more authoritative
// one is recorded. It writes only when it records: once per subject.
func (s *Store) RecordOrigin(ctx context.Context, ref model.SubjectRef, at time.Time, src cache.OriginSource) (bool, error) {
	if ref.Entity == "" || ref.ID == "" || at.IsZero() || (src != cache.OriginObserved && src != cache.OriginStated) {
		return false, fmt.Errorf("record origin: subject, instant and an observed or stated source are required")
	}
	ctx, cancel := s.readCtx(ctx)
	defer cancel()
	recorded := false
	_, _, err := s.mutate(ctx, entityNames(ref), []model.SubjectRef{ref}, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
		st := recs[ref]
		r := cloneRecord(st.rec)
		recorded = recordOrigin(r, at, src)
		if !recorded {
			return nil, nil
		}
		return []*part{{tag: st.tag, changes: []*change{{cur: st, rec: r, mark: true}}}}, nil
	})
	if err != nil {
		return false, s.fail("record origin", err)
	}
	if recorded {
		s.local.Invalidate(ref)
	}
	return recorded, nil
}

// recordOrigin applies RecordOrigin's rule to r: a first origin is
// recorded, a stated one replaces an observed one once.
func recordOrigin(r *record, at time.Time, src cache.OriginSource) bool {
	if !r.seen.IsZero() && (r.seenSrc >= src || r.seenSrc >= cache.OriginStated) {
		return false
	}
	r.seen, r.seenSrc = at.UTC(), src
	return true
}
