package gate

import (
	"context"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy"
	"github.com/gdprgate/gdprgate/policy/model"
)

// ParseInstant exposes parseInstant to the external tests.
var ParseInstant = parseInstant

// SetStore replaces the gate's store (tests count its reads), before any
// request.
func SetStore(g *Gate, s cache.Store) { g.store = s }

// SetBatch sets the BatchLookups option.
func SetBatch(g *Gate, batch bool) { g.batchLookups = batch }

// ItemMasks decides the list items ids (subjects of entity) in order as
// one answer's itemPlanner does, and as a reference that decides each on
// its own: the store's Facts, the policy, the exchange's narrowing, no
// memory of anything. A failed decision is reported in the errs slices.
func ItemMasks(ctx context.Context, g *Gate, ex *Exchange, entity string, ids []string) (got, want []uint32, gotErr, wantErr []bool) {
	p := g.newItemPlanner(ctx, ex, entity)
	p.now = g.now()
	for _, id := range ids {
		b := []byte(id) // a buffer of its own, as a rewrite's decoded id
		m, err := p.Visible(b)
		clear(b) // the planner must not have kept it
		got, gotErr = append(got, m), append(gotErr, err != nil)
	}
	for _, id := range ids {
		sf, ferr := g.store.Facts(ctx, model.SubjectRef{Entity: entity, ID: id}, p.now)
		f := ex.base
		f.RouteKind = policy.KindList
		m, failed := uint32(0), false
		if _, err := fillFacts(&f, &sf, ferr, 0, ""); err != nil && !f.FailOpen {
			failed = true
		} else if d, err := g.decide(ctx, f, nil, nil); err != nil {
			failed = true
		} else if d.Allow {
			m = ex.narrow(d.VisibleMask)
		}
		want, wantErr = append(want, m), append(wantErr, failed)
	}
	return got, want, gotErr, wantErr
}

// PlanItems decides the list items ids as one answer's itemPlanner does
// and returns their masks or-ed together (a benchmark's per-item cost).
func PlanItems(ctx context.Context, g *Gate, ex *Exchange, entity string, ids [][]byte) (uint32, error) {
	p := g.newItemPlanner(ctx, ex, entity)
	p.now = g.now()
	var all uint32
	for _, id := range ids {
		m, err := p.Visible(id)
		if err != nil {
			return 0, err
		}
		all |= m
	}
	return all, nil
}

// CachedFactsReader is the stores' local-cache reader the item planner
// uses when a store has one.
type CachedFactsReader = cachedFacts
