package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/internal/audit"
)

// The audit trail is one stream per tag (written with the tag's changes,
// atomically) and a global one; entry ids are "<stream id>.<stream>" and
// the trail reads as the merge of the streams by stream id, which the
// scripts make the write instant in microseconds (auditLua). Cursors of
// layout 1 (a plain stream id) are accepted.

func streamKey(q int) string {
	if q == globalStream {
		return keyGAudit
	}
	return keyAudit(q)
}

// auditPos is a position in the merged trail.
type auditPos struct {
	ms, seq uint64
	stream  int
}

func (p auditPos) cmp(o auditPos) int {
	return cmp.Or(cmp.Compare(p.ms, o.ms), cmp.Compare(p.seq, o.seq), cmp.Compare(p.stream, o.stream))
}

func parseStreamID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, found && err1 == nil && err2 == nil
}

// parseCursor reads "<ms>-<seq>.<stream>" or a plain stream id (which
// counts as after that id in every stream).
func parseCursor(c string) (auditPos, error) {
	id, q, hasStream := strings.Cut(c, ".")
	ms, seq, ok := parseStreamID(id)
	if !ok {
		return auditPos{}, fmt.Errorf("audit: invalid cursor %q", c)
	}
	p := auditPos{ms: ms, seq: seq, stream: globalStream + 1}
	if hasStream {
		n, err := strconv.Atoi(q)
		if err != nil || n < 0 || n > globalStream {
			return auditPos{}, fmt.Errorf("audit: invalid cursor %q", c)
		}
		p.stream = n
	}
	return p, nil
}

func (p auditPos) String() string {
	return strconv.FormatUint(p.ms, 10) + "-" + strconv.FormatUint(p.seq, 10) + "." + strconv.Itoa(p.stream)
}

// startAfter is the XRANGE start of stream q for entries after p.
func (p auditPos) startAfter(q int) string {
	id := strconv.FormatUint(p.ms, 10) + "-" + strconv.FormatUint(p.seq, 10)
	if q <= p.stream {
		return "(" + id
	}
	return id
}

// auditScript appends one entry on its own: KEYS[1] the stream; ARGV[1]
// the entry.
var auditScript = redis.NewScript(auditLua + `return audit(KEYS[1], ARGV[1])`)

// AppendAudit appends an entry on its own. Entries about a subject go to
// the stream of the tag its hash falls in (spreading, say, rectification
// entries over the cluster); others to the global stream.
func (s *Store) AppendAudit(ctx context.Context, e audit.Entry) (string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := encodeEntry(e, s.opts.Clock())
	if err != nil {
		return "", fmt.Errorf("append audit: %w", err)
	}
	q := globalStream
	if e.Subject != "" {
		q = int(hashParts("a", e.Subject) % numTags)
	}
	out, err := s.run(ctx, call{auditScript, []string{streamKey(q)}, []any{b}})
	if err != nil {
		return "", s.fail("append audit", err)
	}
	id, _ := out[0].(string)
	return id + "." + strconv.Itoa(q), nil
}

// auditHead is one stream's buffered entries in a merged read.
type auditHead struct {
	q    int
	buf  []redis.XMessage
	done bool   // nothing more after buf
	next string // XRANGE start for the next fetch
}

// Audit reads entries after the cursor after ("" = from the start), oldest
// first, at most limit (0: all), and the cursor to continue from.
func (s *Store) Audit(ctx context.Context, after string, limit int) ([]audit.Entry, string, error) {
	var from auditPos
	start := false
	if after != "" {
		p, err := parseCursor(after)
		if err != nil {
			return nil, "", err
		}
		from, start = p, true
	}
	ctx, cancel := context.WithTimeout(ctx, 4*s.opts.WriteTimeout)
	defer cancel()
	heads := make([]*auditHead, globalStream+1)
	for q := range heads {
		h := &auditHead{q: q, next: "-"}
		if start {
			h.next = from.startAfter(q)
		}
		heads[q] = h
	}
	// Each round fetches a small page of every stream that ran dry and may
	// have more; the merge stops when the smallest head belongs to a
	// stream with nothing buffered.
	chunk := int64(16)
	if limit > 0 {
		chunk = int64(max(4, min(limit, 256)/8))
	} else {
		chunk = 512
	}
	var out []audit.Entry
	next := after
	for limit <= 0 || len(out) < limit {
		var dry []*auditHead
		for _, h := range heads {
			if len(h.buf) == 0 && !h.done {
				dry = append(dry, h)
			}
		}
		if len(dry) > 0 {
			if err := s.fetchAudit(ctx, dry, chunk); err != nil {
				return nil, "", s.fail("audit", err)
			}
		}
		var best *auditHead
		var bestPos auditPos
		for _, h := range heads {
			if len(h.buf) == 0 {
				continue
			}
			ms, seq, _ := parseStreamID(h.buf[0].ID)
			p := auditPos{ms, seq, h.q}
			if best == nil || p.cmp(bestPos) < 0 {
				best, bestPos = h, p
			}
		}
		if best == nil {
			break
		}
		m := best.buf[0]
		best.buf = best.buf[1:]
		raw, _ := m.Values["e"].(string)
		var e audit.Entry
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, "", fmt.Errorf("audit: decode %s: %w", m.ID, err)
		}
		e.ID = bestPos.String()
		next = e.ID
		out = append(out, e)
	}
	return out, next, nil
}

func (s *Store) fetchAudit(ctx context.Context, hs []*auditHead, count int64) error {
	p := s.c.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(hs))
	for i, h := range hs {
		cmds[i] = p.XRangeN(ctx, streamKey(h.q), h.next, "+", count)
	}
	if _, err := p.Exec(ctx); err != nil {
		return err
	}
	for i, h := range hs {
		msgs := cmds[i].Val()
		h.buf = msgs
		if int64(len(msgs)) < count {
			h.done = true
		}
		if len(msgs) > 0 {
			h.next = "(" + msgs[len(msgs)-1].ID
		}
	}
	return nil
}

// AuditCount is the number of entries of every stream.
func (s *Store) AuditCount(ctx context.Context) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	p := s.c.Pipeline()
	cmds := make([]*redis.IntCmd, globalStream+1)
	for q := range cmds {
		cmds[q] = p.XLen(ctx, streamKey(q))
	}
	if _, err := p.Exec(ctx); err != nil {
		return 0, s.fail("audit count", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// TrimAudit removes every entry up to and including the cursor through
// (an entry id or a cursor returned by Audit) and returns how many.
// Exporters trim what they exported, by id, never by count alone.
func (s *Store) TrimAudit(ctx context.Context, through string) (int64, error) {
	p, err := parseCursor(through)
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	pl := s.c.Pipeline()
	cmds := make([]*redis.IntCmd, globalStream+1)
	for q := range cmds {
		// XTRIM MINID keeps ids >= minid: stream q loses what the merged
		// order puts at or before p.
		minid := strconv.FormatUint(p.ms, 10) + "-" + strconv.FormatUint(p.seq, 10)
		if q <= p.stream {
			minid = strconv.FormatUint(p.ms, 10) + "-" + strconv.FormatUint(p.seq+1, 10)
		}
		cmds[q] = pl.XTrimMinID(ctx, streamKey(q), minid)
	}
	if _, err := pl.Exec(ctx); err != nil {
		return 0, s.fail("trim audit", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}
