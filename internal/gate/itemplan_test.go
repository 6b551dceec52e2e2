package gate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Both stores read their local cache as the item planner asks (a store
// without the method is read through Facts: right, but slower).
var (
	_ gate.CachedFactsReader = (*memstore.Store)(nil)
	_ gate.CachedFactsReader = (*redisstore.Store)(nil)
)

// factsTable is a store whose subjects k-* have the facts of its table
// (served from its "local cache" unless listed in miss, then by Facts),
// whose subjects e-* cannot be read, and whose others are the scenario's
// store's (c-1 … c-9 seeded in every state, x-* unknown).
type factsTable struct {
	cache.Store
	facts map[string]cache.Facts
	miss  map[string]bool
}

func (s *factsTable) Facts(ctx context.Context, ref model.SubjectRef, now time.Time) (cache.Facts, error) {
	if strings.HasPrefix(ref.ID, "e-") {
		return cache.Facts{}, cache.ErrUnavailable
	}
	if f, ok := s.facts[ref.ID]; ok {
		return f, nil
	}
	return s.Store.Facts(ctx, ref, now)
}

func (s *factsTable) CachedFactsTo(ref model.SubjectRef, now time.Time, dst *cache.Facts) bool {
	if strings.HasPrefix(ref.ID, "e-") || s.miss[ref.ID] {
		return false
	}
	if f, ok := s.facts[ref.ID]; ok {
		*dst = f
		return true
	}
	return s.Store.(interface {
		CachedFactsTo(model.SubjectRef, time.Time, *cache.Facts) bool
	}).CachedFactsTo(ref, now, dst)
}

// randomFacts are facts in a few decision-relevant shapes (so that
// consecutive items often share them) with noise in what decisions do
// not read (Next, Origin, Grants, Stale, …).
func randomFacts(r *rand.Rand) cache.Facts {
	bits := []uint32{0, 1, 2, 3, 4, 8, 0xf, 0x5, ^uint32(0)}
	shape := r.IntN(8)
	pick := func(salt int) uint32 { return bits[(shape*7+salt*3)%len(bits)] }
	f := cache.Facts{
		Known:      shape%3 != 0,
		Restricted: shape == 5,
		State: lifecycle.State{
			Active: pick(1), Archived: pick(2), Expired: pick(3), Obliviated: pick(4),
			CoveredExplicit: pick(5), CoveredInherited: pick(6), Coverage: lifecycle.Coverage(shape % 4),
		},
	}
	f.State.Covered = r.Uint32()
	f.State.Next = time.Unix(int64(r.IntN(3))*1e9, 0)
	if r.IntN(2) == 0 {
		f.State.Grants = []lifecycle.Grant{{LegalisationID: "L", PrivacyPermission: r.Uint32()}}
	}
	f.RegistersVersion = int64(r.IntN(3))
	f.Origin = cache.OriginSource(r.IntN(4))
	f.Stale = r.IntN(4) == 0
	return f
}

// oneChanged is f with one thing a decision reads changed, and fresh
// noise.
func oneChanged(r *rand.Rand, f cache.Facts) cache.Facts {
	n := randomFacts(r)
	n.Known, n.Restricted, n.State = f.Known, f.Restricted, f.State
	n.State.Covered, n.State.Next = r.Uint32(), time.Unix(int64(r.IntN(3))*1e9, 0)
	st, bit := &n.State, uint32(1)<<r.IntN(4)
	switch r.IntN(9) {
	case 0:
		n.Known = !n.Known
	case 1:
		n.Restricted = !n.Restricted
	case 2:
		st.Coverage = (st.Coverage + 1) % 4
	case 3:
		st.Active ^= bit
	case 4:
		st.Archived ^= bit
	case 5:
		st.Expired ^= bit
	case 6:
		st.Obliviated ^= bit
	case 7:
		st.CoveredExplicit ^= bit
	default:
		st.CoveredInherited ^= bit
	}
	return n
}

// Every list item is decided exactly as a planner without any memory
// decides it alone: random lists mixing known subjects in every state
// (active, archived, expired, obliviated, restricted, stale), unknown
// ones, ones read from the local cache or behind it, repeats, and ones
// the store cannot read, for each role, failing closed or open.
func TestItemDecisionsAsEachAlone(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail_open=%v", failOpen), func(t *testing.T) {
			sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) { c.FailOpen = failOpen }})
			g := sc.App.Gate
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			r := rand.New(rand.NewPCG(seed, 15))
			s := &factsTable{Store: sc.App.Store, facts: map[string]cache.Facts{}, miss: map[string]bool{}}
			// k-2i+1 is k-2i with one thing changed: lists often have
			// them one after the other.
			for i := range 40 {
				id := fmt.Sprintf("k-%d", i)
				if i%2 == 0 {
					s.facts[id] = randomFacts(r)
				} else {
					s.facts[id] = oneChanged(r, s.facts[fmt.Sprintf("k-%d", i-1)])
				}
				s.miss[id] = r.IntN(5) == 0
			}
			gate.SetStore(g, s)
			ctx := context.Background()
			decided := 0
			for _, who := range []string{"agent", "supervisor", "supervisor archive", "auditor", "auditor archive", "marketer", "nobody"} {
				role, mode, _ := strings.Cut(who, " ")
				hdr := map[string]string{"x-gdpr-roles": role, "x-gdpr-mode": mode}
				ex := g.Check(ctx, &gate.Request{Method: "GET", Path: "/api/contacts", Header: func(n string) string { return hdr[n] }})
				if !ex.Verdict.Allow {
					continue
				}
				for range 100 {
					ids := make([]string, 1+r.IntN(60))
					for i := range ids {
						switch n := r.IntN(20); {
						case n < 10 && i > 0 && strings.HasPrefix(ids[i-1], "k-") && r.IntN(2) == 0:
							var k int
							fmt.Sscanf(ids[i-1], "k-%d", &k)
							ids[i] = fmt.Sprintf("k-%d", k^1)
						case n < 10:
							ids[i] = fmt.Sprintf("k-%d", r.IntN(40))
						case n < 15:
							ids[i] = fmt.Sprintf("c-%d", 1+r.IntN(9))
						case n < 18:
							ids[i] = fmt.Sprintf("x-%d", r.IntN(10))
						default:
							ids[i] = fmt.Sprintf("e-%d", r.IntN(3))
						}
						if i > 0 && r.IntN(4) == 0 {
							ids[i] = ids[i-1]
						}
					}
					got, want, gotErr, wantErr := gate.ItemMasks(ctx, g, ex, "contact", ids)
					// A failed item fails the whole answer: the planner is
					// not asked past it.
					n := len(ids)
					if i := slices.Index(wantErr, true); i >= 0 {
						n = i + 1
					}
					if !slices.Equal(got[:n], want[:n]) || !slices.Equal(gotErr[:n], wantErr[:n]) {
						t.Fatalf("%s, items %v:\n got %x %v\nwant %x %v", who, ids[:n], got[:n], gotErr[:n], want[:n], wantErr[:n])
					}
					decided += n
				}
			}
			if decided < 1000 {
				t.Fatalf("only %d items decided", decided)
			}
		})
	}
}
