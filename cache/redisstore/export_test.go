package redisstore

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/gdprgate/gdprgate/policy/model"
)

// ClaimForTest claims an evidence key for ref now, as a writer that died
// before writing would leave it.
func ClaimForTest(t *testing.T, s *Store, legalisation, key string, ref model.SubjectRef) {
	t.Helper()
	ctx := context.Background()
	sym, err := s.sym.intern(ctx, s.run, []symName{{symEntity, ref.Entity}, {symLegalisation, legalisation}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := indexField(sym, legalisation, key)
	if err != nil {
		t.Fatal(err)
	}
	m, err := member(sym, ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.runIndex(ctx, claimScript, []any{s.opts.Clock().UnixMilli(), s.claimTakeover().Milliseconds()},
		[]indexOp{{keyPlace(legalisation, key, s.buckets), f, []any{m, "ev-dead"}}}); err != nil {
		t.Fatal(err)
	}
}

// GlobalMasterForTest is the address of the master serving the global slot.
func GlobalMasterForTest(t *testing.T, s *Store) string {
	t.Helper()
	n, err := s.nodeFor(context.Background(), keyRegisters)
	if err != nil {
		t.Fatal(err)
	}
	return n.Options().Addr
}

// BeforeWriteForTest makes f run before every write round trip.
func BeforeWriteForTest(s *Store, f func()) { s.beforeWrite = f }

// TagForTest is the hash tag a subject's record lives under.
func TagForTest(ref model.SubjectRef) int { return subjectPlace(ref, 1).tag }

// DueKeyForTest is the due zset of a hash tag.
func DueKeyForTest(tag int) string { return keyDue(tag) }

// UnbatchMissesForTest makes every local-cache miss read on its own.
func UnbatchMissesForTest(s *Store) { s.unbatched = true }

// RecordKeyForTest is the bucket key and field holding a subject's record.
func RecordKeyForTest(t *testing.T, s *Store, ref model.SubjectRef) (string, string) {
	t.Helper()
	m, err := member(s.sym.current(), ref)
	if err != nil {
		t.Fatal(err)
	}
	pl := subjectPlace(ref, s.buckets)
	return keyBucket(pl.tag, pl.bucket), m
}

// GoRedisMissesForTest makes the miss batcher read through go-redis, not
// its own connection.
func GoRedisMissesForTest(s *Store) {
	if s.raw != nil {
		s.raw.Close()
	}
	s.raw = nil
}

// RawMissesForTest reports whether the miss batcher reads through its own
// connection.
func RawMissesForTest(s *Store) bool { return s.raw != nil }

// StartTLSRedisForTest starts a redis-server speaking only TLS, with a
// password; caFile holds the CA its certificate (for 127.0.0.1) chains to.
func StartTLSRedisForTest(t testing.TB) (addr, password, caFile string) {
	r := startTLSRedis(t)
	return r.addr, r.password, r.caFile
}

// RawReadOverTLSForTest reports whether the miss batcher's own connection
// is open and is a TLS one.
func RawReadOverTLSForTest(s *Store) bool {
	if s.raw == nil {
		return false
	}
	s.raw.mu.Lock()
	defer s.raw.mu.Unlock()
	_, ok := s.raw.conn.(*tls.Conn)
	return ok
}
