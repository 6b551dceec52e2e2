package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// A wipe is global (its record, the queue) and restricts a subject (its
// tag): two writes. The restriction comes first: an interruption leaves
// a subject hidden with no deletion queued — the admin's retry creates the
// wipe — never a deletion of a subject still shown.

// enqueueScript stores wipes unless an id exists: KEYS 1 queue, 2 wipes,
// 3 held, 4 global audit, then the wipe keys; ARGV per wipe 5 values: id,
// JSON record, created (unix ns), what ("q" queue, "h" held, "" store
// only), audit entry.
var enqueueScript = redis.NewScript(auditLua + `
local n = #KEYS - 4
for i = 1, n do
  if redis.call('EXISTS', KEYS[4 + i]) == 1 then return {0, ARGV[5 * i - 4]} end
end
for i = 1, n do
  local a = 5 * (i - 1)
  redis.call('SET', KEYS[4 + i], ARGV[a + 2])
  redis.call('ZADD', KEYS[2], ARGV[a + 3], ARGV[a + 1])
  if ARGV[a + 4] == 'q' then
    redis.call('XADD', KEYS[1], '*', 'wipe', ARGV[a + 1])
  elseif ARGV[a + 4] == 'h' then
    redis.call('ZADD', KEYS[3], ARGV[a + 3], ARGV[a + 1])
  end
  audit(KEYS[4], ARGV[a + 5])
end
return {1}`)

// decideScript turns a held wipe into a decided one if it is still the
// record read: KEYS 1 wipe, 2 held, 3 queue, 4 global audit; ARGV old JSON,
// new JSON, id, "q" to queue, audit entry.
var decideScript = redis.NewScript(auditLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
if ARGV[4] == 'q' then redis.call('XADD', KEYS[3], '*', 'wipe', ARGV[3]) end
audit(KEYS[4], ARGV[5])
return {1}`)

func init() { scripts = append(scripts, enqueueScript, decideScript) }

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
	keys := []string{keyQueue, keyWipes, keyHeld, keyGAudit}
	var args []any
	var restrict []cache.WipeRecord
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
		e, err := encodeEntry(entries[i], s.opts.Clock())
		if err != nil {
			return fmt.Errorf("enqueue wipe: %w", err)
		}
		what := "q"
		switch w.Status {
		case cache.WipeHeld:
			what = "h"
		case cache.WipeNotExecutable:
			what = ""
		default:
			if w.Restricts() {
				restrict = append(restrict, w)
			}
		}
		keys = append(keys, keyWipe(w.ID))
		args = append(args, w.ID, b, strconv.FormatInt(w.CreatedAt.UnixNano(), 10), what, e)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	// A taken id is refused before anything is restricted.
	wkeys := keys[4:]
	if n, err := s.c.Exists(ctx, wkeys...).Result(); err != nil {
		return s.fail("enqueue wipe", err)
	} else if n > 0 {
		return fmt.Errorf("enqueue wipe: %w: wipe id already exists", cache.ErrConflict)
	}
	undo, err := s.restrict(ctx, restrict)
	if err != nil {
		return s.fail("enqueue wipe: restrict", err)
	}
	out, err := s.run(ctx, call{enqueueScript, keys, args})
	if err == nil {
		if ok, id := scriptStatus(out[0]); !ok {
			err = fmt.Errorf("%w: wipe id %s already exists", cache.ErrConflict, id)
		}
	}
	if err != nil {
		undo(ctx)
		return s.fail("enqueue wipe", err)
	}
	return nil
}

// restrict sets each wipe's restriction on its subject and returns what
// undoes it (for a wipe that then could not be queued).
func (s *Store) restrict(ctx context.Context, ws []cache.WipeRecord) (func(context.Context), error) {
	if len(ws) == 0 {
		return func(context.Context) {}, nil
	}
	by := map[model.SubjectRef]string{}
	var refs []model.SubjectRef
	for _, w := range ws {
		if _, ok := by[w.Subject]; !ok {
			refs = append(refs, w.Subject)
		}
		by[w.Subject] = w.ID
	}
	written := map[model.SubjectRef]*change{}
	_, _, err := s.mutate(ctx, entityNames(refs...), refs, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
		byTag := map[int]*part{}
		var parts []*part
		for _, ref := range refs {
			st := recs[ref]
			if st == nil {
				continue
			}
			r := cloneRecord(st.rec)
			r.restriction = by[ref]
			// Published, not marked due: a restriction only stops deletions,
			// and the sweeper committing the lifecycle wipe it just created
			// must not find its own write in the way.
			c := &change{cur: st, rec: r}
			written[ref] = c
			p := byTag[st.tag]
			if p == nil {
				p = &part{tag: st.tag}
				byTag[st.tag] = p
				parts = append(parts, p)
			}
			p.changes = append(p.changes, c)
		}
		return parts, nil
	})
	for _, ref := range refs {
		s.local.Invalidate(ref)
	}
	undo := func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*s.opts.WriteTimeout)
		defer cancel()
		sym := s.sym.current()
		_, _, err := s.mutate(ctx, nil, refs, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
			var parts []*part
			for ref, st := range recs {
				c := written[ref]
				if c == nil || !sameBody(st, c.rec, sym) {
					continue
				}
				parts = append(parts, &part{tag: st.tag, changes: []*change{{cur: st, rec: c.cur.rec}}})
			}
			return parts, nil
		})
		if err != nil {
			s.log.Warn("a wipe could not be queued and its restriction was not lifted: the subject stays hidden until a wipe is requested again", "err", err)
		}
		for _, ref := range refs {
			s.local.Invalidate(ref)
		}
	}
	if err != nil {
		undo(ctx)
		return nil, err
	}
	return undo, nil
}

// DecideWipe approves or rejects a held deletion.
func (s *Store) DecideWipe(ctx context.Context, id string, approve bool, by string, at time.Time, entry audit.Entry) (cache.WipeRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	raw, err := s.c.Get(ctx, keyWipe(id)).Result()
	if isNil(err) {
		return cache.WipeRecord{}, fmt.Errorf("decide wipe: %w", cache.ErrNotFound)
	}
	if err != nil {
		return cache.WipeRecord{}, s.fail("decide wipe", err)
	}
	var w cache.WipeRecord
	if err := json.Unmarshal([]byte(raw), &w); err != nil {
		return cache.WipeRecord{}, fmt.Errorf("decide wipe: decode: %w", err)
	}
	if w.Status != cache.WipeHeld {
		return cache.WipeRecord{}, fmt.Errorf("decide wipe: %w: it is %s, not held", cache.ErrConflict, w.Status)
	}
	w.Decide(approve, by, at)
	b, err := json.Marshal(w)
	if err != nil {
		return cache.WipeRecord{}, fmt.Errorf("decide wipe: encode: %w", err)
	}
	e, err := encodeEntry(entry, s.opts.Clock())
	if err != nil {
		return cache.WipeRecord{}, fmt.Errorf("decide wipe: %w", err)
	}
	undo := func(context.Context) {}
	queue := ""
	if approve {
		queue = "q"
		if w.Restricts() {
			if undo, err = s.restrict(ctx, []cache.WipeRecord{w}); err != nil {
				return cache.WipeRecord{}, s.fail("decide wipe: restrict", err)
			}
		}
	}
	out, err := s.run(ctx, call{decideScript, []string{keyWipe(id), keyHeld, keyQueue, keyGAudit}, []any{raw, b, id, queue, e}})
	if err == nil {
		if ok, _ := scriptStatus(out[0]); !ok {
			err = fmt.Errorf("%w: the deletion changed concurrently", cache.ErrConflict)
		}
	}
	if err != nil {
		undo(ctx)
		return cache.WipeRecord{}, s.fail("decide wipe", err)
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

// saveWipeScript replaces an existing wipe record and appends its audit
// entries: KEYS wipe, global audit; ARGV record, entries.
var saveWipeScript = redis.NewScript(auditLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
redis.call('SET', KEYS[1], ARGV[1])
for i = 2, #ARGV do audit(KEYS[2], ARGV[i]) end
return {1}`)

func init() { scripts = append(scripts, saveWipeScript) }

// SaveWipe records a wipe's progress, with its audit entries atomically.
func (s *Store) SaveWipe(ctx context.Context, w cache.WipeRecord, entries ...audit.Entry) error {
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("save wipe: encode: %w", err)
	}
	args := []any{b}
	for _, e := range entries {
		je, err := encodeEntry(e, s.opts.Clock())
		if err != nil {
			return fmt.Errorf("save wipe: %w", err)
		}
		args = append(args, je)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	out, err := s.run(ctx, call{saveWipeScript, []string{keyWipe(w.ID), keyGAudit}, args})
	if err != nil {
		return s.fail("save wipe", err)
	}
	if ok, _ := scriptStatus(out[0]); !ok {
		return fmt.Errorf("save wipe: %w", cache.ErrNotFound)
	}
	return nil
}

// Wipe returns one wipe record.
func (s *Store) Wipe(ctx context.Context, id string) (cache.WipeRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.c.Get(ctx, keyWipe(id)).Bytes()
	if isNil(err) {
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
	rctx, cancel := context.WithTimeout(ctx, max(block, 0)+s.opts.WriteTimeout)
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
	_, _, err := s.mutate(ctx, entityNames(ref), []model.SubjectRef{ref}, func(recs map[model.SubjectRef]*stored) ([]*part, error) {
		st := recs[ref]
		if st.rec.restriction != wipeID {
			return nil, fmt.Errorf("%w: subject not restricted by this wipe", cache.ErrNotFound)
		}
		r := cloneRecord(st.rec)
		r.restriction = ""
		e := entry
		return []*part{{tag: st.tag, changes: []*change{{cur: st, rec: r, mark: true}}, entry: &e}}, nil
	})
	if err != nil {
		return s.fail("unrestrict", err)
	}
	s.local.Invalidate(ref)
	return nil
}
