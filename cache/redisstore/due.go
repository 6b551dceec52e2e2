package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/model"
)

func parseScore(v string) float64 {
	switch v {
	case "inf", "+inf":
		return cache.NoTransition
	}
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

func dueOf(z redis.Z) (cache.Due, bool) {
	m, _ := z.Member.(string)
	ref, err := cache.ParseSubjectMember(m)
	if err != nil {
		return cache.Due{}, false
	}
	return cache.Due{Ref: ref, Score: z.Score}, true
}

// Due lists subjects due at or before until, earliest first.
func (s *Store) Due(ctx context.Context, until time.Time, limit int) ([]cache.Due, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	zs, err := s.c.ZRangeByScoreWithScores(ctx, keyDue, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(until.UnixMilli(), 10), Count: int64(max(limit, 0)),
	}).Result()
	if err != nil {
		return nil, s.fail("due", err)
	}
	out := make([]cache.Due, 0, len(zs))
	for _, z := range zs {
		if d, ok := dueOf(z); ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// ScanDue walks the due index with ZSCAN.
func (s *Store) ScanDue(ctx context.Context, cursor string, count int) ([]cache.Due, string, error) {
	var cur uint64
	if cursor != "" {
		c, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("scan due: invalid cursor %q", cursor)
		}
		cur = c
	}
	if count <= 0 {
		count = 100
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	kv, next, err := s.c.ZScan(ctx, keyDue, cur, "", int64(count)).Result()
	if err != nil {
		return nil, "", s.fail("scan due", err)
	}
	out := make([]cache.Due, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		ref, err := cache.ParseSubjectMember(kv[i])
		if err != nil {
			continue
		}
		out = append(out, cache.Due{Ref: ref, Score: parseScore(kv[i+1])})
	}
	nc := ""
	if next != 0 {
		nc = strconv.FormatUint(next, 10)
	}
	return out, nc, nil
}

// DueCount counts indexed subjects and those due at or before until.
func (s *Store) DueCount(ctx context.Context, until time.Time) (int, int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	p := s.c.Pipeline()
	total := p.ZCard(ctx, keyDue)
	due := p.ZCount(ctx, keyDue, "-inf", strconv.FormatInt(until.UnixMilli(), 10))
	if _, err := p.Exec(ctx); err != nil {
		return 0, 0, s.fail("due count", err)
	}
	return int(total.Val()), int(due.Val()), nil
}

// Snapshots reads the subjects in one pipelined round trip, and their
// parents' evidence in a second one when some have parents.
func (s *Store) Snapshots(ctx context.Context, refs []model.SubjectRef) ([]cache.Snapshot, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout+time.Duration(len(refs))*100*time.Microsecond)
	defer cancel()
	p := s.c.Pipeline()
	cmds := make([]subjectCmds, len(refs))
	for i, ref := range refs {
		cmds[i] = queueSubject(ctx, p, ref, true)
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.fail("snapshots", err)
	}
	out := make([]cache.Snapshot, len(refs))
	parents := map[model.SubjectRef]*redis.MapStringStringCmd{}
	var pp redis.Pipeliner
	for i, ref := range refs {
		d, err := cmds[i].decode()
		if err != nil {
			return nil, fmt.Errorf("snapshots: %w", err)
		}
		rec, src := d.record(ref)
		out[i] = cache.Snapshot{Record: rec, Origin: src, Applied: d.applied}
		if par := rec.Subject.Parent; par != nil {
			if _, ok := parents[*par]; !ok {
				if pp == nil {
					pp = s.c.Pipeline()
				}
				parents[*par] = pp.HGetAll(ctx, keyEvidence(*par))
			}
		}
	}
	if pp == nil {
		return out, nil
	}
	if _, err := pp.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.fail("snapshots: parents", err)
	}
	decoded := map[model.SubjectRef][]model.Evidence{}
	for ref, c := range parents {
		evs, err := decodeEvidence(c.Val())
		if err != nil {
			return nil, fmt.Errorf("snapshots: parent: %w", err)
		}
		decoded[ref] = evs
	}
	for i := range out {
		if par := out[i].Record.Subject.Parent; par != nil {
			out[i].Inherited = decoded[*par]
		}
	}
	return out, nil
}

// commitScript applies one sweep update when the subject's due score is
// still the one read. KEYS[1] due, KEYS[2] the subject's swept key; ARGV
// member, expected score, next score, applied state.
var commitScript = redis.NewScript(`local function num(v)
  if v == 'inf' or v == '+inf' then return math.huge end
  return tonumber(v)
end
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or num(cur) ~= num(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('SET', KEYS[2], ARGV[4])
return 1`)

// CommitSweep applies the updates whose due score is unchanged, one small
// script per subject, pipelined.
func (s *Store) CommitSweep(ctx context.Context, us []cache.SweepUpdate) ([]bool, error) {
	if len(us) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout+time.Duration(len(us))*100*time.Microsecond)
	defer cancel()
	run := func() ([]*redis.Cmd, error) {
		p := s.c.Pipeline()
		cmds := make([]*redis.Cmd, len(us))
		for i, u := range us {
			cmds[i] = commitScript.EvalSha(ctx, p, []string{keyDue, keySwept(u.Ref)},
				cache.SubjectMember(u.Ref), cache.FormatScore(u.Expect), cache.FormatScore(u.Next), formatApplied(u.Applied))
		}
		_, err := p.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := commitScript.Load(ctx, s.c).Err(); err != nil {
			return nil, s.fail("commit sweep: load script", err)
		}
		cmds, err = run()
	}
	if err != nil {
		return nil, s.fail("commit sweep", err)
	}
	ok := make([]bool, len(us))
	for i, c := range cmds {
		n, _ := c.Int()
		ok[i] = n == 1
	}
	return ok, nil
}

// Recompute is the progress of re-indexing after a register change.
func (s *Store) Recompute(ctx context.Context) (cache.RecomputeProgress, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	raw, err := s.c.HGet(ctx, keyRecompute, "p").Bytes()
	if errors.Is(err, redis.Nil) {
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
	n, err := saveRecomputeScript.Run(ctx, s.c, []string{keyRecompute}, strconv.FormatInt(p.Version, 10), b).Int()
	if err != nil {
		return s.fail("save recompute", err)
	}
	if n == 0 {
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
	n, err := acquireScript.Run(ctx, s.c, []string{keyLease(name)}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, s.fail("acquire lease", err)
	}
	return n == 1, nil
}

// ReleaseLease gives the lease up if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := releaseScript.Run(ctx, s.c, []string{keyLease(name)}, holder).Err(); err != nil {
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
	res, err := guardScript.Run(ctx, s.c, []string{keyGuard}, at.UnixMilli(), window.Milliseconds(), limit, n, conf, cache.NewID("")).Int64Slice()
	if err != nil {
		return false, 0, s.fail("mass-deletion guard", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("mass-deletion guard: unexpected reply %v", res)
	}
	return res[0] == 1, int(res[1]), nil
}
