// Package memstore is the embedded, in-memory cache.Store: the default when
// no Redis URL is configured and the store of the demo and of unit tests.
//
// It lives in one process: it is not shared between sidecars and not
// durable (a restart loses every register change, evidence, wipe and audit
// entry). Use the Redis store (cache/redisstore) for anything but a single
// throw-away instance. Semantics match the Redis store, including the wipe
// queue's claim / ack / idle re-claim behaviour.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Store is an in-memory cache.Store. It is safe for concurrent use.
type Store struct {
	opts  cache.Options
	local *cache.Local

	mu       sync.Mutex
	index    *model.Index
	subjects map[model.SubjectRef]*subject
	// byKey finds evidence by (legalisation_id, evidence_key).
	byKey map[evKey]evLoc
	wipes map[string]cache.WipeRecord
	// queue holds delivered-never messages, pending the claimed-unacked ones.
	queue   []message
	pending map[string]*delivery
	nextMsg int64
	// wake is closed (and replaced) whenever a wipe is queued, waking
	// blocked claimers.
	wake  chan struct{}
	audit []audit.Entry
	// auditBase is how many entries TrimAudit removed: entry n (its id is
	// "<n>-0") is audit[n-1-auditBase].
	auditBase int
	closed    bool

	// due is the due index: subject → score (see cache.Due); dueMark
	// numbers the recompute marks writes leave.
	due     map[model.SubjectRef]float64
	dueMark int64
	held    map[string]bool // held wipe ids
	// guard holds the instants of admitted deletions (mass-deletion guard).
	guard     []time.Time
	leases    map[string]lease
	recompute cache.RecomputeProgress
}

type lease struct {
	holder string
	until  time.Time
}

type subject struct {
	meta *model.Subject // nil: never put (only an origin or evidence)
	// origin is the recorded origin (RecordOrigin, first evidence) and
	// originSrc how it was learnt; PutSubject's meta origin wins over it.
	origin      time.Time
	originSrc   cache.OriginSource
	evidence    map[string]model.Evidence
	restriction string
	children    map[model.SubjectRef]bool
	applied     cache.Applied
}

type evKey struct{ legalisation, key string }

type evLoc struct {
	ref model.SubjectRef
	id  string
}

type message struct{ id, wipeID string }

type delivery struct {
	msg       message
	consumer  string
	claimedAt time.Time
}

var _ cache.Store = (*Store)(nil)

// New returns an empty store: registers at version 0, no subjects.
func New(opts cache.Options) *Store {
	opts = opts.WithDefaults()
	s := &Store{
		opts:     opts,
		local:    cache.NewLocal(opts),
		index:    cache.EmptyIndex(),
		subjects: make(map[model.SubjectRef]*subject),
		byKey:    make(map[evKey]evLoc),
		wipes:    make(map[string]cache.WipeRecord),
		pending:  make(map[string]*delivery),
		wake:     make(chan struct{}),
		due:      make(map[model.SubjectRef]float64),
		held:     make(map[string]bool),
		leases:   make(map[string]lease),
	}
	s.local.SetIndex(s.index)
	return s
}

// Seed loads a registers file into the store, which must be empty (see
// cache.LoadSeed).
func (s *Store) Seed(ctx context.Context, seed *model.Seed) error {
	return cache.LoadSeed(ctx, s, seed)
}

// Local exposes the read-through cache (metrics, tests).
func (s *Store) Local() *cache.Local { return s.local }

// appendAudit assigns e an id in stream order; s.mu must be held.
func (s *Store) appendAudit(e audit.Entry) string {
	e.ID = strconv.Itoa(s.auditBase+len(s.audit)+1) + "-0"
	if e.Time.IsZero() {
		e.Time = s.opts.Clock().UTC()
	}
	e.Detail = cloneMap(e.Detail)
	s.audit = append(s.audit, e)
	return e.ID
}

// auditNumber reads an entry id ("<n>-0"; a sharded store's "<n>-0.<s>"
// is accepted too).
func auditNumber(id string) (int, error) {
	id, _, _ = strings.Cut(id, ".")
	n, err := strconv.Atoi(strings.TrimSuffix(id, "-0"))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("audit: invalid cursor %q", id)
	}
	return n, nil
}

func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed {
		return fmt.Errorf("memstore: %w: closed", cache.ErrUnavailable)
	}
	return nil
}

// Registers returns the current register index.
func (s *Store) Registers(ctx context.Context) (*model.Index, error) {
	if ix := s.local.Index(); ix != nil {
		return ix, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.index, nil
}

// SaveRegisters replaces the registers when the version is expect.
func (s *Store) SaveRegisters(ctx context.Context, regs *model.Registers, expect int64, entry audit.Entry) (int64, error) {
	c, err := cache.CloneRegisters(regs)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if s.index.Version != expect {
		return 0, fmt.Errorf("save registers: %w: stored version %d, expected %d", cache.ErrConflict, s.index.Version, expect)
	}
	ix, err := model.NewIndex(c, expect+1)
	if err != nil {
		return 0, fmt.Errorf("save registers: %w", err)
	}
	entry.Before, entry.After = expect, ix.Version
	s.index = ix
	s.appendAudit(entry)
	s.recompute = cache.RecomputeProgress{Version: ix.Version, Started: s.opts.Clock().UTC()}
	s.local.SetIndex(ix)
	return ix.Version, nil
}

// mark puts ref in the due index with a fresh recompute mark; s.mu held.
func (s *Store) mark(ref model.SubjectRef) {
	s.dueMark++
	s.due[ref] = -float64(s.dueMark)
}

// markWithChildren marks ref and the subjects inheriting its evidence.
func (s *Store) markWithChildren(ref model.SubjectRef) {
	s.mark(ref)
	if sub := s.subjects[ref]; sub != nil {
		for c := range sub.children {
			s.mark(c)
		}
	}
}

// Facts returns the subject's computed state at now.
func (s *Store) Facts(ctx context.Context, ref model.SubjectRef, now time.Time) (cache.Facts, error) {
	var f cache.Facts
	if s.CachedFactsTo(ref, now, &f) {
		return f, nil
	}
	s.local.CountMiss()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return cache.Facts{}, err
	}
	gen := s.local.Gen()
	// Reads never write: an unknown subject is evaluated, not recorded.
	sub := s.subjects[ref]
	if sub == nil {
		sub = &subject{}
	}
	rec, src := s.record(ref, sub)
	var inherited []model.Evidence
	var parent *model.SubjectRef
	if sub.meta != nil && sub.meta.Parent != nil {
		parent = sub.meta.Parent
		if p := s.subjects[*parent]; p != nil {
			inherited = sortedEvidence(p.evidence)
		}
	}
	f = cache.ComputeFacts(s.index, rec, src, inherited, now)
	s.local.Put(ref, parent, f, now, gen)
	return f, nil
}

// CachedFactsTo writes ref's facts into dst when the local cache serves
// them at now (a hit, counted as Facts counts it) and reports whether it
// did; on a miss dst is unchanged. ref is not retained: a caller may pass
// an id that aliases a buffer it reuses. The facts are written, not
// returned: a 104-byte result copied at each call level costs a warm list
// item more than its lookup's arithmetic.
func (s *Store) CachedFactsTo(ref model.SubjectRef, now time.Time, dst *cache.Facts) bool {
	if !s.local.GetTo(ref, now, dst) {
		return false
	}
	s.local.CountHit()
	return true
}

// FactsMany returns the facts of each subject, in order.
func (s *Store) FactsMany(ctx context.Context, refs []model.SubjectRef, now time.Time) ([]cache.Facts, error) {
	out := make([]cache.Facts, len(refs))
	for i, ref := range refs {
		f, err := s.Facts(ctx, ref, now)
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}

// record is what is stored for ref, with the origin resolved: PutSubject's
// when set, else the recorded one, else zero (OriginNone).
func (s *Store) record(ref model.SubjectRef, sub *subject) (cache.SubjectRecord, cache.OriginSource) {
	rec := cache.SubjectRecord{Subject: model.Subject{Ref: ref, Origin: sub.origin}, Restriction: sub.restriction}
	src := sub.originSrc
	if sub.origin.IsZero() {
		src = cache.OriginNone
	}
	if sub.meta != nil {
		rec.Subject = *sub.meta
		if sub.meta.Parent != nil {
			p := *sub.meta.Parent
			rec.Subject.Parent = &p
		}
		if rec.Subject.Origin.IsZero() {
			rec.Subject.Origin = sub.origin
		} else {
			src = cache.OriginSet
		}
		rec.Known = true
	}
	rec.Evidence = sortedEvidence(sub.evidence)
	if len(rec.Evidence) > 0 {
		rec.Known = true
	}
	return rec, src
}

func sortedEvidence(m map[string]model.Evidence) []model.Evidence {
	if len(m) == 0 {
		return nil
	}
	out := make([]model.Evidence, 0, len(m))
	for _, ev := range m {
		out = append(out, ev)
	}
	slices.SortFunc(out, func(a, b model.Evidence) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Subject returns everything stored for ref.
func (s *Store) Subject(ctx context.Context, ref model.SubjectRef) (cache.SubjectRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return cache.SubjectRecord{}, err
	}
	sub := s.subjects[ref]
	if sub == nil {
		return cache.SubjectRecord{Subject: model.Subject{Ref: ref}}, nil
	}
	rec, _ := s.record(ref, sub)
	return rec, nil
}

func (s *Store) subjectFor(ref model.SubjectRef) *subject {
	sub := s.subjects[ref]
	if sub == nil {
		sub = &subject{evidence: map[string]model.Evidence{}, children: map[model.SubjectRef]bool{}}
		s.subjects[ref] = sub
	}
	return sub
}

// RecordOrigin records the subject's origin unless a more authoritative
// one is recorded.
func (s *Store) RecordOrigin(ctx context.Context, ref model.SubjectRef, at time.Time, src cache.OriginSource) (bool, error) {
	if ref.Entity == "" || ref.ID == "" || at.IsZero() || (src != cache.OriginObserved && src != cache.OriginStated) {
		return false, fmt.Errorf("record origin: subject, instant and an observed or stated source are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return false, err
	}
	if !s.recordOrigin(ref, at, src) {
		return false, nil
	}
	s.mark(ref)
	s.local.Invalidate(ref)
	return true, nil
}

// recordOrigin applies RecordOrigin's rule; s.mu held.
func (s *Store) recordOrigin(ref model.SubjectRef, at time.Time, src cache.OriginSource) bool {
	sub := s.subjectFor(ref)
	if !sub.origin.IsZero() && (sub.originSrc >= src || sub.originSrc >= cache.OriginStated) {
		return false
	}
	sub.origin, sub.originSrc = at.UTC(), src
	return true
}

// Children lists the subjects whose parent is ref.
func (s *Store) Children(ctx context.Context, ref model.SubjectRef) ([]model.SubjectRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	sub := s.subjects[ref]
	if sub == nil {
		return nil, nil
	}
	out := make([]model.SubjectRef, 0, len(sub.children))
	for c := range sub.children {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b model.SubjectRef) int {
		return strings.Compare(cache.SubjectMember(a), cache.SubjectMember(b))
	})
	return out, nil
}

// PutSubject creates or replaces a subject's metadata.
func (s *Store) PutSubject(ctx context.Context, sub model.Subject, entry audit.Entry) error {
	if sub.Ref.Entity == "" || sub.Ref.ID == "" {
		return fmt.Errorf("put subject: entity and id are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	m := sub
	if sub.Parent != nil {
		p := *sub.Parent
		m.Parent = &p
	}
	st := s.subjectFor(sub.Ref)
	if old := st.meta; old != nil && old.Parent != nil {
		if p := s.subjects[*old.Parent]; p != nil {
			delete(p.children, sub.Ref)
		}
	}
	if m.Parent != nil {
		s.subjectFor(*m.Parent).children[sub.Ref] = true
	}
	st.meta = &m
	s.appendAudit(entry)
	s.mark(sub.Ref)
	s.local.Invalidate(sub.Ref)
	return nil
}

// PutEvidence stores a batch atomically.
func (s *Store) PutEvidence(ctx context.Context, evs []model.Evidence, entry audit.Entry) ([]model.Evidence, error) {
	for i, ev := range evs {
		if ev.Subject.Entity == "" || ev.Subject.ID == "" || ev.LegalisationID == "" {
			return nil, fmt.Errorf("put evidence: record %d: subject and legalisation_id are required", i)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	// Nothing below can fail, so the batch is all or nothing.
	out := make([]model.Evidence, len(evs))
	touched := map[model.SubjectRef]bool{}
	met := entry.Time
	if met.IsZero() {
		met = s.opts.Clock()
	}
	for i, ev := range evs {
		ev.CommIDs = slices.Clone(ev.CommIDs)
		if ev.SubjectOrigin != nil {
			s.recordOrigin(ev.Subject, *ev.SubjectOrigin, cache.OriginStated)
		} else {
			s.recordOrigin(ev.Subject, met, cache.OriginObserved)
		}
		ev.SubjectOrigin = nil
		if ev.EvidenceKey != "" {
			k := evKey{ev.LegalisationID, ev.EvidenceKey}
			if loc, ok := s.byKey[k]; ok {
				// Idempotent re-import: the record keeps its identity.
				if old := s.subjects[loc.ref]; old != nil {
					delete(old.evidence, loc.id)
				}
				touched[loc.ref] = true
				ev.ID = loc.id
			}
		}
		if ev.ID == "" {
			ev.ID = cache.NewID("ev-")
		}
		sub := s.subjectFor(ev.Subject)
		if old, ok := sub.evidence[ev.ID]; ok && old.EvidenceKey != "" {
			delete(s.byKey, evKey{old.LegalisationID, old.EvidenceKey})
		}
		sub.evidence[ev.ID] = ev
		if ev.EvidenceKey != "" {
			s.byKey[evKey{ev.LegalisationID, ev.EvidenceKey}] = evLoc{ev.Subject, ev.ID}
		}
		touched[ev.Subject] = true
		out[i] = ev
	}
	s.appendAudit(entry)
	for ref := range touched {
		s.markWithChildren(ref)
		s.local.Invalidate(ref)
	}
	return out, nil
}

// RevokeEvidence deletes one evidence record of a subject.
func (s *Store) RevokeEvidence(ctx context.Context, ref model.SubjectRef, id string, entry audit.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	sub := s.subjects[ref]
	if sub == nil {
		return fmt.Errorf("revoke evidence: %w", cache.ErrNotFound)
	}
	ev, ok := sub.evidence[id]
	if !ok {
		return fmt.Errorf("revoke evidence: %w", cache.ErrNotFound)
	}
	delete(sub.evidence, id)
	if ev.EvidenceKey != "" {
		delete(s.byKey, evKey{ev.LegalisationID, ev.EvidenceKey})
	}
	s.appendAudit(entry)
	s.markWithChildren(ref)
	s.local.Invalidate(ref)
	return nil
}

// RenewEvidence moves the origin of existing evidence records to at.
func (s *Store) RenewEvidence(ctx context.Context, ref model.SubjectRef, ids []string, at time.Time, entry audit.Entry) ([]model.Evidence, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	sub := s.subjects[ref]
	if sub == nil {
		return nil, fmt.Errorf("renew evidence: %w", cache.ErrNotFound)
	}
	at = at.UTC()
	var out []model.Evidence
	for _, id := range ids {
		ev, ok := sub.evidence[id]
		if !ok {
			continue
		}
		if ev.RenewedAt == nil || ev.RenewedAt.Before(at) {
			t := at
			ev.RenewedAt = &t
			sub.evidence[id] = ev
		}
		out = append(out, ev)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("renew evidence: %w", cache.ErrNotFound)
	}
	s.appendAudit(entry)
	s.markWithChildren(ref)
	s.local.Invalidate(ref)
	return out, nil
}

// EvidenceCounts counts stored evidence per legalisation.
func (s *Store) EvidenceCounts(ctx context.Context) (map[string]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, sub := range s.subjects {
		for _, ev := range sub.evidence {
			out[ev.LegalisationID]++
		}
	}
	return out, nil
}

// EvidenceByKey finds evidence by its legalisation and evidence_key.
func (s *Store) EvidenceByKey(ctx context.Context, legalisationID, evidenceKey string) (model.Evidence, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return model.Evidence{}, err
	}
	loc, ok := s.byKey[evKey{legalisationID, evidenceKey}]
	if !ok {
		return model.Evidence{}, fmt.Errorf("evidence by key: %w", cache.ErrNotFound)
	}
	ev, ok := s.subjects[loc.ref].evidence[loc.id]
	if !ok {
		return model.Evidence{}, fmt.Errorf("evidence by key: %w", cache.ErrNotFound)
	}
	ev.CommIDs = slices.Clone(ev.CommIDs)
	return ev, nil
}

// EnqueueWipe stores w, restricts its subject and queues it.
func (s *Store) EnqueueWipe(ctx context.Context, w cache.WipeRecord, entry audit.Entry) error {
	return s.EnqueueWipes(ctx, []cache.WipeRecord{w}, []audit.Entry{entry})
}

// EnqueueWipes stores, restricts and queues several wipes, all or nothing.
func (s *Store) EnqueueWipes(ctx context.Context, ws []cache.WipeRecord, entries []audit.Entry) error {
	if len(ws) == 0 || len(entries) != len(ws) {
		return fmt.Errorf("enqueue wipe: one audit entry per wipe is required")
	}
	ids := map[string]bool{}
	for _, w := range ws {
		if w.ID == "" || w.Subject.Entity == "" || w.Subject.ID == "" {
			return fmt.Errorf("enqueue wipe: id and subject are required")
		}
		if ids[w.ID] {
			return fmt.Errorf("enqueue wipe: %w: wipe id %s given twice", cache.ErrConflict, w.ID)
		}
		ids[w.ID] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	for _, w := range ws {
		if _, dup := s.wipes[w.ID]; dup {
			return fmt.Errorf("enqueue wipe: %w: wipe id already exists", cache.ErrConflict)
		}
	}
	queued := false
	for i, w := range ws {
		s.wipes[w.ID] = cloneWipe(w)
		switch w.Status {
		case cache.WipeHeld:
			s.held[w.ID] = true
		case cache.WipeNotExecutable:
		default:
			s.queueWipe(w)
			queued = true
		}
		s.appendAudit(entries[i])
	}
	if queued {
		close(s.wake)
		s.wake = make(chan struct{})
	}
	return nil
}

// queueWipe queues w and restricts its subject when it is a whole-subject
// wipe; s.mu held.
func (s *Store) queueWipe(w cache.WipeRecord) {
	if w.Restricts() {
		// Not marked due: see the Redis store's queueWipe.
		s.subjectFor(w.Subject).restriction = w.ID
		s.local.Invalidate(w.Subject)
	}
	s.nextMsg++
	s.queue = append(s.queue, message{id: strconv.FormatInt(s.nextMsg, 10) + "-0", wipeID: w.ID})
}

// DecideWipe approves or rejects a held deletion.
func (s *Store) DecideWipe(ctx context.Context, id string, approve bool, by string, at time.Time, entry audit.Entry) (cache.WipeRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return cache.WipeRecord{}, err
	}
	w, ok := s.wipes[id]
	if !ok {
		return cache.WipeRecord{}, fmt.Errorf("decide wipe: %w", cache.ErrNotFound)
	}
	if w.Status != cache.WipeHeld {
		return cache.WipeRecord{}, fmt.Errorf("decide wipe: %w: it is %s, not held", cache.ErrConflict, w.Status)
	}
	w = cloneWipe(w)
	w.Decide(approve, by, at)
	s.wipes[id] = w
	delete(s.held, id)
	if approve {
		s.queueWipe(w)
		close(s.wake)
		s.wake = make(chan struct{})
	}
	s.appendAudit(entry)
	return cloneWipe(w), nil
}

// HeldWipes lists held deletions, oldest first.
func (s *Store) HeldWipes(ctx context.Context, limit int) ([]cache.WipeRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make([]cache.WipeRecord, 0, len(s.held))
	for id := range s.held {
		out = append(out, cloneWipe(s.wipes[id]))
	}
	slices.SortFunc(out, func(a, b cache.WipeRecord) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func cloneWipe(w cache.WipeRecord) cache.WipeRecord {
	w.Steps = slices.Clone(w.Steps)
	return w
}

// SaveWipe records a wipe's progress.
func (s *Store) SaveWipe(ctx context.Context, w cache.WipeRecord, entries ...audit.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, ok := s.wipes[w.ID]; !ok {
		return fmt.Errorf("save wipe: %w", cache.ErrNotFound)
	}
	s.wipes[w.ID] = cloneWipe(w)
	for _, e := range entries {
		s.appendAudit(e)
	}
	return nil
}

// Wipe returns one wipe record.
func (s *Store) Wipe(ctx context.Context, id string) (cache.WipeRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return cache.WipeRecord{}, err
	}
	w, ok := s.wipes[id]
	if !ok {
		return cache.WipeRecord{}, fmt.Errorf("wipe: %w", cache.ErrNotFound)
	}
	return cloneWipe(w), nil
}

// ListWipes returns the newest wipes first, at most limit.
func (s *Store) ListWipes(ctx context.Context, limit int) ([]cache.WipeRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make([]cache.WipeRecord, 0, len(s.wipes))
	for _, w := range s.wipes {
		out = append(out, cloneWipe(w))
	}
	slices.SortFunc(out, func(a, b cache.WipeRecord) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ClaimWipe hands the next queued wipe, or an idle claimed one, to consumer.
func (s *Store) ClaimWipe(ctx context.Context, consumer string, minIdle, block time.Duration) (cache.Claim, error) {
	var timer <-chan time.Time
	if block > 0 {
		t := time.NewTimer(block)
		defer t.Stop()
		timer = t.C
	}
	for {
		s.mu.Lock()
		if err := s.check(ctx); err != nil {
			s.mu.Unlock()
			return cache.Claim{}, err
		}
		now := s.opts.Clock()
		// Idle claims first, oldest message first, as XAUTOCLAIM does.
		var idle *delivery
		for _, d := range s.pending {
			if now.Sub(d.claimedAt) >= minIdle && (idle == nil || msgLess(d.msg.id, idle.msg.id)) {
				idle = d
			}
		}
		if idle != nil {
			idle.consumer, idle.claimedAt = consumer, now
			s.mu.Unlock()
			return cache.Claim{WipeID: idle.msg.wipeID, Token: idle.msg.id}, nil
		}
		if len(s.queue) > 0 {
			m := s.queue[0]
			s.queue = s.queue[1:]
			s.pending[m.id] = &delivery{msg: m, consumer: consumer, claimedAt: now}
			s.mu.Unlock()
			return cache.Claim{WipeID: m.wipeID, Token: m.id}, nil
		}
		wake := s.wake
		s.mu.Unlock()
		if timer == nil {
			return cache.Claim{}, fmt.Errorf("claim wipe: %w", cache.ErrNotFound)
		}
		select {
		case <-wake:
		case <-timer:
			return cache.Claim{}, fmt.Errorf("claim wipe: %w", cache.ErrNotFound)
		case <-ctx.Done():
			return cache.Claim{}, ctx.Err()
		}
	}
}

func msgLess(a, b string) bool {
	an, _ := strconv.ParseInt(strings.TrimSuffix(a, "-0"), 10, 64)
	bn, _ := strconv.ParseInt(strings.TrimSuffix(b, "-0"), 10, 64)
	return an < bn
}

// AckWipe marks a claim finished.
func (s *Store) AckWipe(ctx context.Context, c cache.Claim) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	// Acking an unknown or already acked claim is a no-op, as XACK is.
	delete(s.pending, c.Token)
	return nil
}

// Unrestrict lifts a wipe's restriction.
func (s *Store) Unrestrict(ctx context.Context, ref model.SubjectRef, wipeID string, entry audit.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	sub := s.subjects[ref]
	if sub == nil || sub.restriction != wipeID {
		return fmt.Errorf("unrestrict: %w: subject not restricted by this wipe", cache.ErrNotFound)
	}
	sub.restriction = ""
	s.appendAudit(entry)
	s.mark(ref)
	s.local.Invalidate(ref)
	return nil
}

// AppendAudit appends an entry on its own.
func (s *Store) AppendAudit(ctx context.Context, e audit.Entry) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return "", err
	}
	return s.appendAudit(e), nil
}

// Audit reads entries after the id after, oldest first.
func (s *Store) Audit(ctx context.Context, after string, limit int) ([]audit.Entry, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	start := 0
	if after != "" {
		n, err := auditNumber(after)
		if err != nil {
			return nil, "", err
		}
		start = min(max(n-s.auditBase, 0), len(s.audit))
	}
	end := len(s.audit)
	if limit > 0 {
		end = min(end, start+limit)
	}
	out := make([]audit.Entry, end-start)
	for i, e := range s.audit[start:end] {
		e.Detail = cloneMap(e.Detail)
		out[i] = e
	}
	next := after
	if len(out) > 0 {
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// AuditCount is the number of entries in the audit trail.
func (s *Store) AuditCount(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	return int64(len(s.audit)), nil
}

// TrimAudit removes the entries up to and including through.
func (s *Store) TrimAudit(ctx context.Context, through string) (int64, error) {
	n, err := auditNumber(through)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	k := min(max(n-s.auditBase, 0), len(s.audit))
	s.audit = append([]audit.Entry(nil), s.audit[k:]...)
	s.auditBase += k
	return int64(k), nil
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Ping always succeeds on an open store.
func (s *Store) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.check(ctx)
}

// Close marks the store closed; later calls fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
