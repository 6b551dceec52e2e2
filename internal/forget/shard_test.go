package forget

import (
	"context"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/cache/storetest"
	"github.com/gdprgate/gdprgate/policy/model"
)

// shardedStore splits memstore's due index in shards, as redisstore's is.
type shardedStore struct{ *memstore.Store }

func (s shardedStore) DueShard(ctx context.Context, until time.Time, limit, shard, shards int) ([]cache.Due, error) {
	all, err := s.Due(ctx, until, 1<<30)
	if err != nil {
		return nil, err
	}
	var out []cache.Due
	for _, d := range all {
		if int(crc32.ChecksumIEEE([]byte(d.Ref.ID)))%shards == shard && len(out) < limit {
			out = append(out, d)
		}
	}
	return out, nil
}

// A due index split in shards is read one shard ahead of the one being
// decided and committed: every due subject is processed once (none twice,
// none left), and the pass goes on until every shard is finished.
func TestShardedDueIndexIsSweptWholeAndOnce(t *testing.T) {
	st := shardedStore{memstore.New(cache.Options{})}
	t.Cleanup(func() { st.Close() })
	f := newSweepFixture(t, st, false, 10)
	if res := f.pass(); res.Processed != 0 {
		t.Fatalf("the seed's re-indexing processed %d subjects", res.Processed) // none yet: the due path is the subject
	}
	var refs []model.SubjectRef
	for i := range 40 {
		refs = append(refs, f.put(fmt.Sprintf("c-%d", i), storetest.T0))
	}
	var total PassResult
	for range 100 {
		res, err := f.sw.Pass(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		total.Processed += res.Processed
		total.Committed += res.Committed
		total.Retried += res.Retried
		if !res.More {
			break
		}
	}
	if total.Processed != 40 || total.Committed != 40 || total.Retried != 0 {
		t.Fatalf("passes processed %d, committed %d, retried %d; want each of the 40 subjects once", total.Processed, total.Committed, total.Retried)
	}
	// Each got its deletion work (health is obliviated at once) and its
	// next transition.
	if n := len(f.wipes()); n != 40 {
		t.Fatalf("%d deletion records, want 40", n)
	}
	for _, ref := range refs {
		if d := f.dueAt(ref); !d.At().Equal(storetest.T0.Add(30 * day)) {
			t.Fatalf("%s: next due %v, want %v", ref.ID, d.At(), storetest.T0.Add(30*day))
		}
	}
	if res, err := f.sw.Pass(f.ctx); err != nil || res.Processed != 0 {
		t.Fatalf("a pass with nothing due processed %d (%v)", res.Processed, err)
	}
}
