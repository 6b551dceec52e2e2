package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

func sortEvidence(evs []model.Evidence) {
	slices.SortFunc(evs, func(a, b model.Evidence) int { return cmp.Compare(a.ID, b.ID) })
}

// evLoc is the value of the evkey index.
type evLoc struct {
	Entity string `json:"entity"`
	ID     string `json:"id"`
	EvID   string `json:"ev"`
}

func (l evLoc) ref() model.SubjectRef { return model.SubjectRef{Entity: l.Entity, ID: l.ID} }

func evField(legalisation, key string) string { return legalisation + "\x00" + key }

// PutEvidence stores a batch atomically.
func (s *Store) PutEvidence(ctx context.Context, evs []model.Evidence, entry audit.Entry) ([]model.Evidence, error) {
	for i, ev := range evs {
		if ev.Subject.Entity == "" || ev.Subject.ID == "" || ev.LegalisationID == "" {
			return nil, fmt.Errorf("put evidence: record %d: subject and legalisation_id are required", i)
		}
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var out []model.Evidence
	var touched map[model.SubjectRef]bool
	watch := []string{keyEvKey}
	for _, ev := range evs {
		watch = append(watch, keyEvidence(ev.Subject))
	}
	err := s.c.Watch(ctx, func(tx *redis.Tx) error {
		out = make([]model.Evidence, len(evs))
		touched = map[model.SubjectRef]bool{}
		// Where each (legalisation, key) lives now, updated as the batch
		// is applied so that duplicates inside one batch collapse too.
		index := map[string]*evLoc{}
		var fields []string
		for _, ev := range evs {
			if ev.EvidenceKey != "" {
				fields = append(fields, evField(ev.LegalisationID, ev.EvidenceKey))
			}
		}
		if len(fields) > 0 {
			vals, err := tx.HMGet(ctx, keyEvKey, fields...).Result()
			if err != nil {
				return err
			}
			for i, v := range vals {
				if str, ok := v.(string); ok {
					var l evLoc
					if json.Unmarshal([]byte(str), &l) == nil {
						index[fields[i]] = &l
					}
				}
			}
		}
		// Records re-imported under another subject: watch the old one too.
		for _, l := range index {
			if err := tx.Watch(ctx, keyEvidence(l.ref())).Err(); err != nil {
				return err
			}
		}
		type del struct {
			ref model.SubjectRef
			id  string
		}
		type slot struct {
			ref model.SubjectRef
			id  string
		}
		// The legalisation stored in each touched record slot before and
		// after the batch, for the per-legalisation evidence counts.
		before, after := map[slot]string{}, map[slot]string{}
		first := func(sl slot, leg string) {
			if _, ok := before[sl]; !ok {
				before[sl] = leg
			}
		}
		var dels []del
		var delFields []string
		for i, ev := range evs {
			ev.CommIDs = slices.Clone(ev.CommIDs)
			if ev.EvidenceKey != "" {
				if l := index[evField(ev.LegalisationID, ev.EvidenceKey)]; l != nil {
					// Idempotent re-import: the record keeps its identity.
					ev.ID = l.EvID
					// A slot first touched here holds the stored record of
					// this very key, hence this legalisation.
					first(slot{l.ref(), l.EvID}, ev.LegalisationID)
					if l.ref() != ev.Subject {
						dels = append(dels, del{l.ref(), l.EvID})
						touched[l.ref()] = true
						after[slot{l.ref(), l.EvID}] = ""
					}
				}
			}
			if ev.ID == "" {
				ev.ID = cache.NewID("ev-")
			} else if ev.EvidenceKey == "" || index[evField(ev.LegalisationID, ev.EvidenceKey)] == nil {
				// A given id may replace a record stored under another key.
				old, err := tx.HGet(ctx, keyEvidence(ev.Subject), ev.ID).Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					return err
				}
				var o model.Evidence
				if old != "" && json.Unmarshal([]byte(old), &o) == nil {
					first(slot{ev.Subject, ev.ID}, o.LegalisationID)
					if o.EvidenceKey != "" && (o.LegalisationID != ev.LegalisationID || o.EvidenceKey != ev.EvidenceKey) {
						delFields = append(delFields, evField(o.LegalisationID, o.EvidenceKey))
					}
				}
			}
			first(slot{ev.Subject, ev.ID}, "")
			after[slot{ev.Subject, ev.ID}] = ev.LegalisationID
			if ev.EvidenceKey != "" {
				index[evField(ev.LegalisationID, ev.EvidenceKey)] = &evLoc{ev.Subject.Entity, ev.Subject.ID, ev.ID}
			}
			touched[ev.Subject] = true
			out[i] = ev
		}
		counts := map[string]int64{}
		for sl, b := range before {
			a, ok := after[sl]
			if !ok {
				a = b
			}
			if b != "" {
				counts[b]--
			}
			if a != "" {
				counts[a]++
			}
		}
		// Subjects inheriting a touched subject's evidence change too.
		children := map[model.SubjectRef][]model.SubjectRef{}
		for ref := range touched {
			ms, err := tx.SMembers(ctx, keyChildren(ref)).Result()
			if err != nil {
				return err
			}
			for _, m := range ms {
				if c, err := cache.ParseSubjectMember(m); err == nil {
					children[ref] = append(children[ref], c)
				}
			}
		}
		met := entry.Time
		if met.IsZero() {
			met = s.opts.Clock()
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, d := range dels {
				p.HDel(ctx, keyEvidence(d.ref), d.id)
			}
			if len(delFields) > 0 {
				p.HDel(ctx, keyEvKey, delFields...)
			}
			for i, ev := range out {
				// The subject's origin: the import's statement, else now
				// (gdprgate met the subject through this evidence).
				if so := evs[i].SubjectOrigin; so != nil {
					originSetScript.Eval(ctx, p, []string{keySeen(ev.Subject)}, formatOrigin(*so, cache.OriginStated))
				} else {
					p.SetNX(ctx, keySeen(ev.Subject), formatOrigin(met, cache.OriginObserved), 0)
				}
				ev.SubjectOrigin = nil
				out[i] = ev
				b, err := json.Marshal(ev)
				if err != nil {
					return fmt.Errorf("encode evidence: %w", err)
				}
				p.HSet(ctx, keyEvidence(ev.Subject), ev.ID, b)
				if ev.EvidenceKey != "" {
					lb, _ := json.Marshal(evLoc{ev.Subject.Entity, ev.Subject.ID, ev.ID})
					p.HSet(ctx, keyEvKey, evField(ev.LegalisationID, ev.EvidenceKey), lb)
				}
			}
			for leg, n := range counts {
				if n != 0 {
					p.HIncrBy(ctx, keyEvCount, leg, n)
				}
			}
			if err := addAudit(ctx, p, entry, s.opts.Clock()); err != nil {
				return err
			}
			for ref := range touched {
				touch(ctx, p, ref, children[ref]...)
			}
			return nil
		})
		return err
	}, watch...)
	if errors.Is(err, redis.TxFailedErr) {
		err = fmt.Errorf("%w: evidence changed concurrently, retry", cache.ErrConflict)
	}
	if err != nil {
		return nil, s.fail("put evidence", err)
	}
	for ref := range touched {
		s.local.Invalidate(ref)
	}
	return out, nil
}

// RevokeEvidence deletes one evidence record of a subject.
func (s *Store) RevokeEvidence(ctx context.Context, ref model.SubjectRef, id string, entry audit.Entry) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	err := s.c.Watch(ctx, func(tx *redis.Tx) error {
		raw, err := tx.HGet(ctx, keyEvidence(ref), id).Result()
		if errors.Is(err, redis.Nil) {
			return cache.ErrNotFound
		}
		if err != nil {
			return err
		}
		var ev model.Evidence
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			return fmt.Errorf("decode evidence: %w", err)
		}
		var children []model.SubjectRef
		ms, err := tx.SMembers(ctx, keyChildren(ref)).Result()
		if err != nil {
			return err
		}
		for _, m := range ms {
			if c, err := cache.ParseSubjectMember(m); err == nil {
				children = append(children, c)
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HDel(ctx, keyEvidence(ref), id)
			if ev.EvidenceKey != "" {
				p.HDel(ctx, keyEvKey, evField(ev.LegalisationID, ev.EvidenceKey))
			}
			p.HIncrBy(ctx, keyEvCount, ev.LegalisationID, -1)
			if err := addAudit(ctx, p, entry, s.opts.Clock()); err != nil {
				return err
			}
			touch(ctx, p, ref, children...)
			return nil
		})
		return err
	}, keyEvidence(ref), keyEvKey)
	if errors.Is(err, redis.TxFailedErr) {
		err = fmt.Errorf("%w: evidence changed concurrently, retry", cache.ErrConflict)
	}
	if err != nil {
		return s.fail("revoke evidence", err)
	}
	s.local.Invalidate(ref)
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
	err := s.c.Watch(ctx, func(tx *redis.Tx) error {
		out = out[:0]
		vals, err := tx.HMGet(ctx, keyEvidence(ref), ids...).Result()
		if err != nil {
			return err
		}
		fields := make([]any, 0, 2*len(ids))
		for i, v := range vals {
			raw, ok := v.(string)
			if !ok {
				continue // revoked meanwhile: a renewal never recreates
			}
			var ev model.Evidence
			if err := json.Unmarshal([]byte(raw), &ev); err != nil {
				return fmt.Errorf("decode evidence: %w", err)
			}
			if ev.RenewedAt == nil || ev.RenewedAt.Before(at) {
				t := at
				ev.RenewedAt = &t
			}
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			fields = append(fields, ids[i], string(b))
			out = append(out, ev)
		}
		if len(out) == 0 {
			return cache.ErrNotFound
		}
		var children []model.SubjectRef
		ms, err := tx.SMembers(ctx, keyChildren(ref)).Result()
		if err != nil {
			return err
		}
		for _, m := range ms {
			if c, err := cache.ParseSubjectMember(m); err == nil {
				children = append(children, c)
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, keyEvidence(ref), fields...)
			if err := addAudit(ctx, p, entry, s.opts.Clock()); err != nil {
				return err
			}
			touch(ctx, p, ref, children...)
			return nil
		})
		return err
	}, keyEvidence(ref))
	if errors.Is(err, redis.TxFailedErr) {
		err = fmt.Errorf("%w: evidence changed concurrently, retry", cache.ErrConflict)
	}
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			return nil, fmt.Errorf("renew evidence: %w", err)
		}
		return nil, s.fail("renew evidence", err)
	}
	s.local.Invalidate(ref)
	return out, nil
}

// originSetScript is originScript's rule without the publication, for use
// inside a transaction that publishes itself.
var originSetScript = redis.NewScript(`local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(ARGV[1], 1, 2) ~= 's ' or string.sub(cur, 1, 2) == 's ' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1`)

// EvidenceCounts counts stored evidence per legalisation.
func (s *Store) EvidenceCounts(ctx context.Context) (map[string]int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	m, err := s.c.HGetAll(ctx, keyEvCount).Result()
	if err != nil {
		return nil, s.fail("evidence counts", err)
	}
	out := make(map[string]int, len(m))
	for leg, v := range m {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			out[leg] = n
		}
	}
	return out, nil
}

// EvidenceByKey finds evidence by its legalisation and evidence_key.
func (s *Store) EvidenceByKey(ctx context.Context, legalisationID, evidenceKey string) (model.Evidence, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	raw, err := s.c.HGet(ctx, keyEvKey, evField(legalisationID, evidenceKey)).Result()
	if errors.Is(err, redis.Nil) {
		return model.Evidence{}, fmt.Errorf("evidence by key: %w", cache.ErrNotFound)
	}
	if err != nil {
		return model.Evidence{}, s.fail("evidence by key", err)
	}
	var l evLoc
	if err := json.Unmarshal([]byte(raw), &l); err != nil {
		return model.Evidence{}, fmt.Errorf("evidence by key: decode index: %w", err)
	}
	b, err := s.c.HGet(ctx, keyEvidence(l.ref()), l.EvID).Bytes()
	if errors.Is(err, redis.Nil) {
		return model.Evidence{}, fmt.Errorf("evidence by key: %w", cache.ErrNotFound)
	}
	if err != nil {
		return model.Evidence{}, s.fail("evidence by key", err)
	}
	var ev model.Evidence
	if err := json.Unmarshal(b, &ev); err != nil {
		return model.Evidence{}, fmt.Errorf("evidence by key: decode: %w", err)
	}
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
	keys := make([]string, len(ws))
	data := make([][]byte, len(ws))
	ids := map[string]bool{}
	for i, w := range ws {
		if w.ID == "" || w.Subject.Entity == "" || w.Subject.ID == "" {
			return fmt.Errorf("enqueue wipe: id and subject are required")
		}
		if ids[w.ID] {
			return fmt.Errorf("enqueue wipe: %w: wipe id %s given twice", cache.ErrConflict, w.ID)
		}
		ids[w.ID] = true
		b, err := json.Marshal(w)
		if err != nil {
			return fmt.Errorf("enqueue wipe: encode: %w", err)
		}
		keys[i], data[i] = keyWipe(w.ID), b
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	err := s.c.Watch(ctx, func(tx *redis.Tx) error {
		n, err := tx.Exists(ctx, keys...).Result()
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: wipe id already exists", cache.ErrConflict)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for i, w := range ws {
				p.Set(ctx, keys[i], data[i], 0)
				p.ZAdd(ctx, keyWipes, redis.Z{Score: float64(w.CreatedAt.UnixNano()), Member: w.ID})
				switch w.Status {
				case cache.WipeHeld:
					p.ZAdd(ctx, keyHeld, redis.Z{Score: float64(w.CreatedAt.UnixNano()), Member: w.ID})
				case cache.WipeNotExecutable:
				default:
					queueWipe(ctx, p, w)
				}
				if err := addAudit(ctx, p, entries[i], s.opts.Clock()); err != nil {
					return err
				}
			}
			return nil
		})
		return err
	}, keys...)
	if errors.Is(err, redis.TxFailedErr) {
		err = fmt.Errorf("%w: wipe id already exists", cache.ErrConflict)
	}
	if err != nil {
		return s.fail("enqueue wipe", err)
	}
	for _, w := range ws {
		if w.Restricts() && w.Status != cache.WipeHeld && w.Status != cache.WipeNotExecutable {
			s.local.Invalidate(w.Subject)
		}
	}
	return nil
}

// queueWipe queues w in a transaction, restricting its subject when it is a
// whole-subject wipe.
func queueWipe(ctx context.Context, p redis.Pipeliner, w cache.WipeRecord) {
	if w.Restricts() {
		// Published, not marked due: a restriction only stops deletions,
		// and the sweeper committing the lifecycle wipe it just created
		// must not find its own write in the way.
		p.Set(ctx, keyRestriction(w.Subject), w.ID, 0)
		publish(ctx, p, subjectMsg(w.Subject))
	}
	p.XAdd(ctx, &redis.XAddArgs{Stream: keyQueue, Values: []any{"wipe", w.ID}})
}

// DecideWipe approves or rejects a held deletion.
func (s *Store) DecideWipe(ctx context.Context, id string, approve bool, by string, at time.Time, entry audit.Entry) (cache.WipeRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var w cache.WipeRecord
	err := s.c.Watch(ctx, func(tx *redis.Tx) error {
		raw, err := tx.Get(ctx, keyWipe(id)).Bytes()
		if errors.Is(err, redis.Nil) {
			return cache.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("decode wipe: %w", err)
		}
		if w.Status != cache.WipeHeld {
			return fmt.Errorf("%w: it is %s, not held", cache.ErrConflict, w.Status)
		}
		w.Decide(approve, by, at)
		b, err := json.Marshal(w)
		if err != nil {
			return fmt.Errorf("encode wipe: %w", err)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, keyWipe(id), b, 0)
			p.ZRem(ctx, keyHeld, id)
			if approve {
				queueWipe(ctx, p, w)
			}
			return addAudit(ctx, p, entry, s.opts.Clock())
		})
		return err
	}, keyWipe(id))
	if errors.Is(err, redis.TxFailedErr) {
		err = fmt.Errorf("%w: the deletion changed concurrently", cache.ErrConflict)
	}
	if err != nil {
		return cache.WipeRecord{}, s.fail("decide wipe", err)
	}
	if approve && w.Restricts() {
		s.local.Invalidate(w.Subject)
	}
	return w, nil
}

// HeldWipes lists held deletions, oldest first.
func (s *Store) HeldWipes(ctx context.Context, limit int) ([]cache.WipeRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	stop := int64(-1)
	if limit > 0 {
		stop = int64(limit) - 1
	}
	ids, err := s.c.ZRange(ctx, keyHeld, 0, stop).Result()
	if err != nil {
		return nil, s.fail("held wipes", err)
	}
	return s.wipesByID(ctx, ids, "held wipes")
}

func (s *Store) wipesByID(ctx context.Context, ids []string, op string) ([]cache.WipeRecord, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = keyWipe(id)
	}
	vals, err := s.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, s.fail(op, err)
	}
	out := make([]cache.WipeRecord, 0, len(vals))
	for _, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		var w cache.WipeRecord
		if err := json.Unmarshal([]byte(str), &w); err != nil {
			return nil, fmt.Errorf("%s: decode: %w", op, err)
		}
		out = append(out, w)
	}
	return out, nil
}

// SaveWipe records a wipe's progress.
func (s *Store) SaveWipe(ctx context.Context, w cache.WipeRecord, entries ...audit.Entry) error {
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("save wipe: encode: %w", err)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if len(entries) == 0 {
		ok, err := s.c.SetXX(ctx, keyWipe(w.ID), b, 0).Result()
		if err != nil {
			return s.fail("save wipe", err)
		}
		if !ok {
			return fmt.Errorf("save wipe: %w", cache.ErrNotFound)
		}
		return nil
	}
	// The record and its audit entries in one MULTI; WATCH makes the
	// existence check part of it.
	err = s.c.Watch(ctx, func(tx *redis.Tx) error {
		n, err := tx.Exists(ctx, keyWipe(w.ID)).Result()
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("save wipe: %w", cache.ErrNotFound)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, keyWipe(w.ID), b, 0)
			for _, e := range entries {
				if err := addAudit(ctx, p, e, s.opts.Clock()); err != nil {
					return err
				}
			}
			return nil
		})
		return err
	}, keyWipe(w.ID))
	if errors.Is(err, redis.TxFailedErr) {
		err = fmt.Errorf("%w: wipe changed concurrently", cache.ErrConflict)
	}
	if err != nil {
		return s.fail("save wipe", err)
	}
	return nil
}

// Wipe returns one wipe record.
func (s *Store) Wipe(ctx context.Context, id string) (cache.WipeRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.c.Get(ctx, keyWipe(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return cache.WipeRecord{}, fmt.Errorf("wipe: %w", cache.ErrNotFound)
	}
	if err != nil {
		return cache.WipeRecord{}, s.fail("wipe", err)
	}
	var w cache.WipeRecord
	if err := json.Unmarshal(b, &w); err != nil {
		return cache.WipeRecord{}, fmt.Errorf("wipe: decode: %w", err)
	}
	return w, nil
}

// ListWipes returns the newest wipes first, at most limit.
func (s *Store) ListWipes(ctx context.Context, limit int) ([]cache.WipeRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	stop := int64(-1)
	if limit > 0 {
		stop = int64(limit) - 1
	}
	ids, err := s.c.ZRevRange(ctx, keyWipes, 0, stop).Result()
	if err != nil {
		return nil, s.fail("list wipes", err)
	}
	return s.wipesByID(ctx, ids, "list wipes")
}

// ClaimWipe hands the next queued wipe, or an idle claimed one, to consumer.
func (s *Store) ClaimWipe(ctx context.Context, consumer string, minIdle, block time.Duration) (cache.Claim, error) {
	c, err := s.claim(ctx, consumer, minIdle, block)
	if err != nil && strings.Contains(err.Error(), "NOGROUP") {
		// The queue was deleted (FLUSHALL, a restored backup): recreate.
		if gerr := s.ensureGroup(ctx); gerr != nil {
			return cache.Claim{}, gerr
		}
		c, err = s.claim(ctx, consumer, minIdle, block)
	}
	return c, err
}

func (s *Store) claim(ctx context.Context, consumer string, minIdle, block time.Duration) (cache.Claim, error) {
	cctx, cancel := s.ctx(ctx)
	msgs, _, err := s.c.XAutoClaim(cctx, &redis.XAutoClaimArgs{
		Stream: keyQueue, Group: group, Consumer: consumer, MinIdle: minIdle, Start: "0-0", Count: 1,
	}).Result()
	cancel()
	if err != nil {
		return cache.Claim{}, s.fail("claim wipe", err)
	}
	if len(msgs) > 0 {
		return claimOf(msgs[0]), nil
	}
	args := &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{keyQueue, ">"}, Count: 1, Block: -1}
	if block > 0 {
		args.Block = max(block, time.Millisecond)
	}
	rctx, cancel := context.WithTimeout(ctx, max(block, 0)+s.opts.Timeout)
	defer cancel()
	streams, err := s.c.XReadGroup(rctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return cache.Claim{}, fmt.Errorf("claim wipe: %w", cache.ErrNotFound)
	}
	if err != nil {
		return cache.Claim{}, s.fail("claim wipe", err)
	}
	for _, st := range streams {
		if len(st.Messages) > 0 {
			return claimOf(st.Messages[0]), nil
		}
	}
	return cache.Claim{}, fmt.Errorf("claim wipe: %w", cache.ErrNotFound)
}

func claimOf(m redis.XMessage) cache.Claim {
	id, _ := m.Values["wipe"].(string)
	return cache.Claim{WipeID: id, Token: m.ID}
}

// AckWipe marks a claim finished.
func (s *Store) AckWipe(ctx context.Context, c cache.Claim) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.c.XAck(ctx, keyQueue, group, c.Token).Err(); err != nil {
		return s.fail("ack wipe", err)
	}
	return nil
}

// Unrestrict lifts a wipe's restriction.
func (s *Store) Unrestrict(ctx context.Context, ref model.SubjectRef, wipeID string, entry audit.Entry) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	err := s.c.Watch(ctx, func(tx *redis.Tx) error {
		cur, err := tx.Get(ctx, keyRestriction(ref)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if cur != wipeID {
			return fmt.Errorf("%w: subject not restricted by this wipe", cache.ErrNotFound)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, keyRestriction(ref))
			if err := addAudit(ctx, p, entry, s.opts.Clock()); err != nil {
				return err
			}
			touch(ctx, p, ref)
			return nil
		})
		return err
	}, keyRestriction(ref))
	if errors.Is(err, redis.TxFailedErr) {
		err = fmt.Errorf("%w: restriction changed concurrently", cache.ErrConflict)
	}
	if err != nil {
		return s.fail("unrestrict", err)
	}
	s.local.Invalidate(ref)
	return nil
}

// AppendAudit appends an entry on its own.
func (s *Store) AppendAudit(ctx context.Context, e audit.Entry) (string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if e.Time.IsZero() {
		e.Time = s.opts.Clock().UTC()
	}
	e.ID = ""
	b, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("append audit: encode: %w", err)
	}
	id, err := s.c.XAdd(ctx, &redis.XAddArgs{Stream: keyAudit, Values: []any{"e", b}}).Result()
	if err != nil {
		return "", s.fail("append audit", err)
	}
	return id, nil
}

// Audit reads entries after the id after, oldest first.
func (s *Store) Audit(ctx context.Context, after string, limit int) ([]audit.Entry, string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	start := "-"
	if after != "" {
		start = "(" + after
	}
	var msgs []redis.XMessage
	var err error
	if limit > 0 {
		msgs, err = s.c.XRangeN(ctx, keyAudit, start, "+", int64(limit)).Result()
	} else {
		msgs, err = s.c.XRange(ctx, keyAudit, start, "+").Result()
	}
	if err != nil {
		return nil, "", s.fail("audit", err)
	}
	out := make([]audit.Entry, 0, len(msgs))
	for _, m := range msgs {
		raw, _ := m.Values["e"].(string)
		var e audit.Entry
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, "", fmt.Errorf("audit: decode %s: %w", m.ID, err)
		}
		e.ID = m.ID
		out = append(out, e)
	}
	next := after
	if len(out) > 0 {
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// Ping checks Redis.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.fail("ping", s.c.Ping(ctx).Err())
}

// Close stops the background loops and closes the connections.
func (s *Store) Close() error {
	s.cancel()
	s.local.StopWatchdog()
	_ = s.pubsub.Close()
	s.wg.Wait()
	return s.c.Close()
}
