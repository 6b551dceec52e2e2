package redisstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/policy/model"
)

// symbols maps the names that repeat across millions of records (entity
// names, legalisation ids, actors) to small codes, stored once in the
// global hash keySymbols. Codes are never reused nor reassigned, so a
// sidecar caches the table for ever and reloads it only when it meets a
// code it does not know (another sidecar added it) or when the store was
// emptied (the health loop sees the table's generation change).
type symbols struct {
	tab atomic.Pointer[symTab]
	mu  sync.Mutex // serialises reloads and interning
}

type symTab struct {
	gen    string
	byName map[symName]uint64
	byCode map[uint64]symName
}

type symName struct {
	kind byte
	name string
}

func (t *symTab) code(kind byte, name string) (uint64, bool) {
	c, ok := t.byName[symName{kind, name}]
	return c, ok
}

func (t *symTab) name(kind byte, code uint64) (string, bool) {
	n, ok := t.byCode[code]
	if !ok || n.kind != kind {
		return "", false
	}
	return n.name, true
}

func (s *symbols) current() *symTab {
	if t := s.tab.Load(); t != nil {
		return t
	}
	return &symTab{byName: map[symName]uint64{}, byCode: map[uint64]symName{}}
}

// load reads the whole table.
func (s *symbols) load(ctx context.Context, c redis.UniversalClient) (*symTab, error) {
	m, err := c.HGetAll(ctx, keySymbols).Result()
	if err != nil {
		return nil, err
	}
	t := &symTab{gen: m["gen"], byName: make(map[symName]uint64, len(m)/2), byCode: make(map[uint64]symName, len(m)/2)}
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, "c")
		if !ok {
			continue
		}
		code, err := strconv.ParseUint(rest, 10, 64)
		if err != nil || len(v) < 2 || v[1] != 0 {
			continue
		}
		n := symName{kind: v[0], name: v[2:]}
		t.byCode[code] = n
		t.byName[n] = code
	}
	s.tab.Store(t)
	return t, nil
}

// internScript gives each (kind, name) in ARGV a code, creating the missing
// ones. ARGV[1] is a generation id used if the table is new.
var internScript = redis.NewScript(`if redis.call('HSETNX', KEYS[1], 'gen', ARGV[1]) == 1 then end
local out = {}
for i = 2, #ARGV do
  local f = 'n' .. ARGV[i]
  local c = redis.call('HGET', KEYS[1], f)
  if not c then
    c = redis.call('HINCRBY', KEYS[1], 'next', 1)
    redis.call('HSET', KEYS[1], f, c, 'c' .. c, ARGV[i])
  end
  out[#out + 1] = tonumber(c)
end
return out`)

// intern makes sure every name has a code and returns the table holding
// them. run executes the script (with the store's WAIT: a code records use
// must survive a failover as surely as the records).
func (s *symbols) intern(ctx context.Context, run func(context.Context, ...call) ([]any, error), names []symName) (*symTab, error) {
	t := s.current()
	var missing []symName
	seen := map[symName]bool{}
	for _, n := range names {
		if _, ok := t.byName[n]; !ok && !seen[n] {
			seen[n] = true
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return t, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	args := make([]any, 0, len(missing)+1)
	args = append(args, newGen())
	for _, n := range missing {
		args = append(args, string([]byte{n.kind, 0})+n.name)
	}
	out, err := run(ctx, call{internScript, []string{keySymbols}, args})
	if err != nil {
		return nil, err
	}
	raw, _ := out[0].([]any)
	if len(raw) != len(missing) {
		return nil, fmt.Errorf("redisstore: symbol codes: unexpected reply %v", out[0])
	}
	codes := make([]int64, len(raw))
	for i, v := range raw {
		codes[i], _ = v.(int64)
	}
	old := s.current()
	nt := &symTab{gen: old.gen, byName: make(map[symName]uint64, len(old.byName)+len(missing)), byCode: make(map[uint64]symName, len(old.byCode)+len(missing))}
	for k, v := range old.byName {
		nt.byName[k] = v
	}
	for k, v := range old.byCode {
		nt.byCode[k] = v
	}
	for i, n := range missing {
		nt.byName[n] = uint64(codes[i])
		nt.byCode[uint64(codes[i])] = n
	}
	if nt.gen == "" {
		nt.gen = args[0].(string)
	}
	s.tab.Store(nt)
	return nt, nil
}

func newGen() string { return strconv.FormatUint(randUint64(), 36) }

// member is a subject's field in its bucket: entity code, then the id.
func member(t symbolTable, ref model.SubjectRef) (string, error) {
	c, ok := t.code(symEntity, ref.Entity)
	if !ok {
		return "", fmt.Errorf("redisstore: entity %q has no symbol code", ref.Entity)
	}
	// Built on the stack: the string is the one allocation.
	var buf [64]byte
	b := binary.AppendUvarint(buf[:0], c)
	return string(append(b, ref.ID...)), nil
}

// parseMember reverses member.
func parseMember(t symbolTable, m string) (model.SubjectRef, error) {
	c, n := binary.Uvarint([]byte(m))
	if n <= 0 {
		return model.SubjectRef{}, errCorrupt
	}
	e, ok := t.name(symEntity, c)
	if !ok {
		return model.SubjectRef{}, fmt.Errorf("%w %d (entity)", errUnknownSymbol, c)
	}
	return model.SubjectRef{Entity: e, ID: m[n:]}, nil
}
