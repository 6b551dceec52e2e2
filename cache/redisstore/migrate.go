package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// MigrateOptions shape a migration.
type MigrateOptions struct {
	// Buckets per tag of the target (default: the source's when it has
	// layout 2, else 512).
	Buckets int
	// DeleteOld removes the layout 1 keys once everything was copied (an
	// in-place migration, same URL for source and target).
	DeleteOld bool
	// Batch is the number of subjects written per round (default 1000).
	Batch int
	// Progress, when set, is called after each batch with the subjects
	// copied so far.
	Progress func(subjects int)
	// Timeout bounds each Redis call (default 30s: batches are large).
	Timeout time.Duration
}

// MigrateReport says what a migration copied.
type MigrateReport struct {
	FromLayout  string `json:"from_layout"`
	Subjects    int    `json:"subjects"`
	Evidence    int    `json:"evidence"`
	KeyIndex    int    `json:"key_index_entries"`
	GlobalKeys  int    `json:"global_keys_copied"`
	OldDeleted  int    `json:"old_keys_deleted"`
	TargetTags  int    `json:"tags"`
	Buckets     int    `json:"buckets_per_tag"`
	AuditEntry  string `json:"audit_entry,omitempty"`
	SameStorage bool   `json:"in_place"`
}

// Migrate copies a store into key layout 2: from layout 1 (everything
// under {g}, gdprgate before sharding), in place (toURL = fromURL) or into
// another Redis; or from layout 2 into another Redis with another bucket
// count. Registers, wipes, the wipe queue and the audit trail are copied
// as they are (in place they already are where layout 2 keeps them); each
// subject's keys become one record; the evidence-key index is rebuilt.
// Sidecars must be stopped (or read-only) while it runs: writes made
// meanwhile to the source are not carried over. It is idempotent: a
// migration interrupted can be run again.
func Migrate(ctx context.Context, fromURL, toURL string, o MigrateOptions) (*MigrateReport, error) {
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	inPlace := sameURL(fromURL, toURL)
	src, err := newClient(fromURL, o.Timeout)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	rep := &MigrateReport{SameStorage: inPlace, TargetTags: numTags}
	layout, err := src.HGetAll(ctx, keyLayout).Result()
	if err != nil {
		return nil, fmt.Errorf("migrate: read the source: %w", err)
	}
	rep.FromLayout = "1"
	srcBuckets := 0
	if layout["version"] != "" {
		rep.FromLayout = layout["version"]
		if rep.FromLayout != layoutVersion {
			return nil, fmt.Errorf("migrate: the source has layout %q; this version reads layouts 1 and %s", rep.FromLayout, layoutVersion)
		}
		if inPlace {
			return nil, errors.New("migrate: the source already has layout 2; to change the bucket count, migrate into another Redis (--to-url)")
		}
		srcBuckets, _ = strconv.Atoi(layout["buckets"])
		if o.Buckets == 0 {
			o.Buckets = srcBuckets
		}
	}
	if !inPlace {
		dst, err := newClient(toURL, o.Timeout)
		if err != nil {
			return nil, err
		}
		n, err := countKeys(ctx, dst, "gdprgate:*")
		dst.Close()
		if err != nil {
			return nil, fmt.Errorf("migrate: read the target: %w", err)
		}
		if n > 0 {
			return nil, fmt.Errorf("migrate: the target already holds %d gdprgate keys; migrate into an empty Redis", n)
		}
	}
	dst, err := open(ctx, toURL, cache.Options{Buckets: o.Buckets, Timeout: o.Timeout, HealthInterval: time.Hour}, true)
	if err != nil {
		return nil, fmt.Errorf("migrate: open the target: %w", err)
	}
	defer dst.Close()
	rep.Buckets = dst.buckets
	m := &migration{src: src, dst: dst, o: o, rep: rep}
	if !inPlace {
		if err := m.copyGlobal(ctx, rep.FromLayout == "2"); err != nil {
			return rep, err
		}
	}
	if rep.FromLayout == "1" {
		err = m.subjectsV1(ctx)
		if err == nil {
			err = m.indexV1(ctx)
		}
	} else {
		err = m.subjectsV2(ctx, srcBuckets)
	}
	if err != nil {
		return rep, err
	}
	if o.DeleteOld && inPlace && rep.FromLayout == "1" {
		if rep.OldDeleted, err = deleteV1(ctx, src); err != nil {
			return rep, err
		}
	}
	id, err := dst.AppendAudit(ctx, audit.Entry{
		Actor: "gdprgate store migrate", Action: "store.migrate", Object: "store",
		Detail: map[string]string{"from_layout": rep.FromLayout, "to_layout": layoutVersion, "subjects": strconv.Itoa(rep.Subjects),
			"evidence": strconv.Itoa(rep.Evidence), "buckets": strconv.Itoa(rep.Buckets), "in_place": strconv.FormatBool(inPlace)},
	})
	if err != nil {
		return rep, fmt.Errorf("migrate: audit: %w", err)
	}
	rep.AuditEntry = id
	// Sidecars still running learn that everything may have changed.
	_ = dst.c.Publish(ctx, channel, strconv.Itoa(globalStream)+" 0 x").Err()
	return rep, nil
}

func sameURL(a, b string) bool { return strings.TrimRight(a, "/") == strings.TrimRight(b, "/") }

type migration struct {
	src redis.UniversalClient
	dst *Store
	o   MigrateOptions
	rep *MigrateReport
}

// scanKeys calls fn with every key matching pattern, on every master; the
// calls never overlap (masters are scanned in parallel).
func scanKeys(ctx context.Context, c redis.UniversalClient, pattern string, fn func(ctx context.Context, node redis.Cmdable, keys []string) error) error {
	var mu sync.Mutex
	each := func(ctx context.Context, node *redis.Client) error {
		var cur uint64
		for {
			keys, next, err := node.Scan(ctx, cur, pattern, 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				mu.Lock()
				err := fn(ctx, node, keys)
				mu.Unlock()
				if err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
			cur = next
		}
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, each)
	}
	if cl, ok := c.(*redis.Client); ok {
		return each(ctx, cl)
	}
	return fmt.Errorf("migrate: unsupported client")
}

func countKeys(ctx context.Context, c redis.UniversalClient, pattern string) (int, error) {
	n := 0
	err := scanKeys(ctx, c, pattern, func(_ context.Context, _ redis.Cmdable, keys []string) error {
		n += len(keys)
		return nil
	})
	return n, err
}

// copyGlobal copies the {g} keys (and, from layout 2, every tag's audit
// stream and counters) into the empty target with DUMP/RESTORE: registers,
// recompute, wipes and their queue with its consumer group, the audit.
func (m *migration) copyGlobal(ctx context.Context, v2 bool) error {
	patterns := []string{gp + "*"}
	if v2 {
		patterns = append(patterns, "gdprgate:{*}:audit")
	}
	skip := func(k string) bool {
		switch {
		case k == keyLayout || k == keySymbols || k == keyGMeta:
			return true // the target has its own
		case k == v1Epoch || k == v1EvKey || k == v1Due || k == gp+"duemark" || k == gp+"evcount":
			return true // layout 1 state rebuilt from the subjects
		case strings.HasPrefix(k, gp+"s:"):
			return true // layout 1 subjects, converted
		}
		return false
	}
	for _, pat := range patterns {
		err := scanKeys(ctx, m.src, pat, func(ctx context.Context, node redis.Cmdable, keys []string) error {
			for _, k := range keys {
				if skip(k) {
					continue
				}
				dump, err := node.Dump(ctx, k).Result()
				if isNil(err) {
					continue
				}
				if err != nil {
					return fmt.Errorf("migrate: dump %s: %w", k, err)
				}
				ttl, err := node.PTTL(ctx, k).Result()
				if err != nil {
					return err
				}
				if ttl < 0 {
					ttl = 0
				}
				if err := m.dst.c.RestoreReplace(ctx, k, ttl, dump).Err(); err != nil {
					return fmt.Errorf("migrate: restore %s: %w", k, err)
				}
				m.rep.GlobalKeys++
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// v1Suffixes are the per-subject keys of layout 1.
var v1Suffixes = []string{"meta", "seen", "evidence", "restriction", "children", "swept"}

// parseV1Key splits "gdprgate:{g}:s:<len>:<entity>:<id>:<suffix>".
func parseV1Key(k string) (model.SubjectRef, bool) {
	rest, ok := strings.CutPrefix(k, gp+"s:")
	if !ok {
		return model.SubjectRef{}, false
	}
	for _, suf := range v1Suffixes {
		if m, ok := strings.CutSuffix(rest, ":"+suf); ok {
			ref, err := cache.ParseSubjectMember(m)
			return ref, err == nil
		}
	}
	return model.SubjectRef{}, false
}

func v1Key(ref model.SubjectRef, suffix string) string {
	return gp + "s:" + cache.SubjectMember(ref) + ":" + suffix
}

// subjectsV1 converts every layout 1 subject into a record.
func (m *migration) subjectsV1(ctx context.Context) error {
	done := map[model.SubjectRef]bool{}
	var batch []model.SubjectRef
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := m.writeV1(ctx, batch)
		batch = batch[:0]
		return err
	}
	err := scanKeys(ctx, m.src, gp+"s:*", func(ctx context.Context, _ redis.Cmdable, keys []string) error {
		for _, k := range keys {
			ref, ok := parseV1Key(k)
			if !ok || done[ref] {
				continue
			}
			done[ref] = true
			batch = append(batch, ref)
			if len(batch) >= m.o.Batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// writeV1 reads a batch of layout 1 subjects and writes their records.
func (m *migration) writeV1(ctx context.Context, refs []model.SubjectRef) error {
	p := m.src.Pipeline()
	type cmds struct {
		meta, seen, restr, swept *redis.StringCmd
		evs                      *redis.MapStringStringCmd
		children                 *redis.StringSliceCmd
		due                      *redis.FloatCmd
	}
	cs := make([]cmds, len(refs))
	for i, r := range refs {
		cs[i] = cmds{
			meta: p.Get(ctx, v1Key(r, "meta")), seen: p.Get(ctx, v1Key(r, "seen")),
			restr: p.Get(ctx, v1Key(r, "restriction")), swept: p.Get(ctx, v1Key(r, "swept")),
			evs: p.HGetAll(ctx, v1Key(r, "evidence")), children: p.SMembers(ctx, v1Key(r, "children")),
			due: p.ZScore(ctx, v1Due, cache.SubjectMember(r)),
		}
	}
	if _, err := p.Exec(ctx); err != nil && !isNil(err) {
		return fmt.Errorf("migrate: read subjects: %w", err)
	}
	recs := make(map[model.SubjectRef]*record, len(refs))
	var names []symName
	for i, ref := range refs {
		c := cs[i]
		r := &record{score: scoreNever}
		if b, err := c.meta.Bytes(); err == nil {
			var s model.Subject
			if err := json.Unmarshal(b, &s); err != nil {
				return fmt.Errorf("migrate: subject meta: %w", err)
			}
			s.Ref = ref
			r.meta = &s
			if s.Parent != nil {
				names = append(names, symName{symEntity, s.Parent.Entity})
			}
		}
		if v, err := c.seen.Result(); err == nil {
			r.seen, r.seenSrc = parseV1Origin(v)
		}
		r.restriction = c.restr.Val()
		if v, err := c.swept.Result(); err == nil {
			o, rd, _ := strings.Cut(v, ":")
			ob, _ := strconv.ParseUint(o, 10, 32)
			rn, _ := strconv.Atoi(rd)
			r.applied = cache.Applied{Obliviated: uint32(ob), Round: rn}
		}
		for _, mm := range c.children.Val() {
			if ch, err := cache.ParseSubjectMember(mm); err == nil {
				r.children = append(r.children, ch)
				names = append(names, symName{symEntity, ch.Entity})
			}
		}
		for _, v := range c.evs.Val() {
			var ev model.Evidence
			if err := json.Unmarshal([]byte(v), &ev); err != nil {
				return fmt.Errorf("migrate: evidence: %w", err)
			}
			ev.Subject, ev.SubjectOrigin = ref, nil
			r.evidence = append(r.evidence, ev)
			names = append(names, symName{symLegalisation, ev.LegalisationID})
			if ev.CreatedBy != "" {
				names = append(names, symName{symActor, ev.CreatedBy})
			}
		}
		sortByID(r.evidence)
		if sc, err := c.due.Result(); err == nil {
			r.score = scoreOf(sc)
		}
		recs[ref] = r
		names = append(names, symName{symEntity, ref.Entity})
	}
	return m.put(ctx, names, refs, recs)
}

// parseV1Origin reads layout 1's recorded origin: "o <RFC 3339>",
// "s <RFC 3339>", or a bare timestamp (observed).
func parseV1Origin(v string) (time.Time, cache.OriginSource) {
	src := cache.OriginObserved
	switch {
	case strings.HasPrefix(v, "s "):
		src, v = cache.OriginStated, v[2:]
	case strings.HasPrefix(v, "o "):
		v = v[2:]
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, cache.OriginNone
	}
	return t.UTC(), src
}

// put writes records (whatever the target holds for them: a migration run
// again overwrites its first run) without audit entries — the migration
// leaves one entry of its own — and keeping their due scores.
func (m *migration) put(ctx context.Context, names []symName, refs []model.SubjectRef, recs map[model.SubjectRef]*record) error {
	_, _, err := m.dst.mutate(ctx, names, refs, func(cur map[model.SubjectRef]*stored) ([]*part, error) {
		byTag := map[int]*part{}
		var parts []*part
		for ref, st := range cur {
			r := recs[ref]
			p := byTag[st.tag]
			if p == nil {
				p = &part{tag: st.tag, evcount: map[string]int64{}}
				byTag[st.tag] = p
				parts = append(parts, p)
			}
			p.changes = append(p.changes, &change{cur: st, rec: r})
			for _, ev := range st.rec.evidence {
				p.evcount[ev.LegalisationID]--
			}
			for _, ev := range r.evidence {
				p.evcount[ev.LegalisationID]++
			}
		}
		return parts, nil
	})
	if err != nil {
		return fmt.Errorf("migrate: write subjects: %w", err)
	}
	for _, r := range recs {
		m.rep.Evidence += len(r.evidence)
	}
	m.rep.Subjects += len(refs)
	if m.o.Progress != nil {
		m.o.Progress(m.rep.Subjects)
	}
	return nil
}

// indexV1 rebuilds the evidence-key index from layout 1's evkey hash.
func (m *migration) indexV1(ctx context.Context) error {
	var cur uint64
	for {
		kv, next, err := m.src.HScan(ctx, v1EvKey, cur, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("migrate: read the evidence-key index: %w", err)
		}
		type loc struct {
			Entity string `json:"entity"`
			ID     string `json:"id"`
			EvID   string `json:"ev"`
		}
		var ents []indexPut
		for i := 0; i+1 < len(kv); i += 2 {
			leg, key, ok := strings.Cut(kv[i], "\x00")
			var l loc
			if !ok || json.Unmarshal([]byte(kv[i+1]), &l) != nil {
				continue
			}
			ents = append(ents, indexPut{leg, key, model.SubjectRef{Entity: l.Entity, ID: l.ID}, l.EvID})
		}
		if err := m.putIndex(ctx, ents); err != nil {
			return err
		}
		if next == 0 {
			return nil
		}
		cur = next
	}
}

type indexPut struct {
	leg, key string
	ref      model.SubjectRef
	id       string
}

// putIndex writes released index entries into the target.
func (m *migration) putIndex(ctx context.Context, ents []indexPut) error {
	if len(ents) == 0 {
		return nil
	}
	names := make([]symName, 0, 2*len(ents))
	for _, e := range ents {
		names = append(names, symName{symLegalisation, e.leg}, symName{symEntity, e.ref.Entity})
	}
	sym, err := m.dst.sym.intern(ctx, m.dst.run, names)
	if err != nil {
		return fmt.Errorf("migrate: symbols: %w", err)
	}
	p := m.dst.c.Pipeline()
	for _, e := range ents {
		f, err := indexField(sym, e.leg, e.key)
		if err != nil {
			return err
		}
		mem, err := member(sym, e.ref)
		if err != nil {
			return err
		}
		pl := keyPlace(e.leg, e.key, m.dst.buckets)
		p.HSet(ctx, keyIndex(pl.tag, pl.bucket), f, indexEntry{id: e.id, member: mem}.encode())
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("migrate: write the evidence-key index: %w", err)
	}
	m.rep.KeyIndex += len(ents)
	return nil
}

// subjectsV2 copies the records of a layout 2 source, tag by tag.
func (m *migration) subjectsV2(ctx context.Context, srcBuckets int) error {
	ss := &symbols{}
	if _, err := ss.load(ctx, m.src); err != nil {
		return fmt.Errorf("migrate: source symbols: %w", err)
	}
	sym := ss.current()
	for t := range numTags {
		var zc uint64
		for {
			kv, next, err := m.src.ZScan(ctx, keyDue(t), zc, "", 200).Result()
			if err != nil {
				return fmt.Errorf("migrate: scan tag %d: %w", t, err)
			}
			var refs []model.SubjectRef
			recs := map[model.SubjectRef]*record{}
			var names []symName
			for i := 0; i+1 < len(kv); i += 2 {
				b, err := strconv.Atoi(kv[i])
				if err != nil {
					continue
				}
				vals, err := m.src.HGetAll(ctx, keyBucket(t, b)).Result()
				if err != nil {
					return fmt.Errorf("migrate: read bucket: %w", err)
				}
				for mem, v := range vals {
					ref, err := parseMember(sym, mem)
					if err != nil {
						return fmt.Errorf("migrate: %w", err)
					}
					ov := ""
					if len(v) > scoreLen && v[scoreLen]&flagStub != 0 {
						ov, _ = m.src.Get(ctx, keyOverflow(t, mem)).Result()
					}
					r, err := decodeRecord(ref, v, ov, sym)
					if err != nil {
						return fmt.Errorf("migrate: decode record: %w", err)
					}
					refs = append(refs, ref)
					recs[ref] = r
					names = append(names, recordNames(ref, r)...)
				}
			}
			if len(refs) > 0 {
				if err := m.put(ctx, names, refs, recs); err != nil {
					return err
				}
			}
			if next == 0 {
				break
			}
			zc = next
		}
		// The tag's evidence-key index.
		err := scanKeys(ctx, m.src, tagPrefix[t]+"k:*", func(ctx context.Context, node redis.Cmdable, keys []string) error {
			for _, k := range keys {
				vals, err := node.HGetAll(ctx, k).Result()
				if err != nil {
					return err
				}
				var ents []indexPut
				for f, v := range vals {
					leg, key, err := parseIndexField(sym, f)
					if err != nil {
						return err
					}
					e, err := decodeIndexEntry(v)
					if err != nil {
						return err
					}
					ref, err := parseMember(sym, e.member)
					if err != nil {
						return err
					}
					ents = append(ents, indexPut{leg, key, ref, e.id})
				}
				if err := m.putIndex(ctx, ents); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func parseIndexField(sym symbolTable, f string) (leg, key string, err error) {
	d := decoder{b: []byte(f), sym: sym}
	leg = d.symbol(symLegalisation)
	if d.err != nil {
		return "", "", d.err
	}
	return leg, string(d.b), nil
}

// recordNames are the symbols a record needs.
func recordNames(ref model.SubjectRef, r *record) []symName {
	out := []symName{{symEntity, ref.Entity}}
	if r.meta != nil && r.meta.Parent != nil {
		out = append(out, symName{symEntity, r.meta.Parent.Entity})
	}
	for _, c := range r.children {
		out = append(out, symName{symEntity, c.Entity})
	}
	for _, ev := range r.evidence {
		out = append(out, symName{symLegalisation, ev.LegalisationID})
		if ev.CreatedBy != "" {
			out = append(out, symName{symActor, ev.CreatedBy})
		}
	}
	return out
}

// deleteV1 removes layout 1's per-subject keys and indexes.
func deleteV1(ctx context.Context, c redis.UniversalClient) (int, error) {
	n := 0
	err := scanKeys(ctx, c, gp+"s:*", func(ctx context.Context, node redis.Cmdable, keys []string) error {
		d, err := node.Del(ctx, keys...).Result()
		n += int(d)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("migrate: delete layout 1 subjects: %w", err)
	}
	d, err := c.Del(ctx, v1EvKey, v1Due, gp+"duemark", v1Epoch, gp+"evcount").Result()
	if err != nil {
		return n, fmt.Errorf("migrate: delete layout 1 indexes: %w", err)
	}
	return n + int(d), nil
}
