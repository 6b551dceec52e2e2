package forget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// ChangePreview is what a register change does to the subjects gdprgate
// knows, evaluated now: how many change state per sensitivity, and the
// deletion work the sweeper would create because of it.
type ChangePreview struct {
	// Subjects scanned; Changed of them change state.
	Subjects int `json:"subjects"`
	Changed  int `json:"changed"`
	// Bits counts, per sensitivity id, the subjects whose bit moves, by
	// "from→to" ("active→archived").
	Bits map[string]map[string]int `json:"bits"`
	// Deletions is the work the change creates: whole-subject wipes,
	// erasures, bits that would be obliviated with no step configured
	// (not executable), and Total = Wipes + Erasures. Work the old
	// registers would have created anyway is not counted.
	Deletions DeletionCounts `json:"deletions"`
	// Partial: the scan stopped early (StopAfter deletions were found).
	Partial bool `json:"partial,omitempty"`
}

// DeletionCounts count deletion work by kind.
type DeletionCounts struct {
	Total         int `json:"total"`
	Wipes         int `json:"wipes"`
	Erasures      int `json:"erasures"`
	NotExecutable int `json:"not_executable"`
}

// LifecycleChanged reports whether two register sets can give a subject a
// different lifecycle (a change of roles or rules cannot).
func LifecycleChanged(a, b *model.Registers) bool {
	part := func(r *model.Registers) []byte {
		v, _ := json.Marshal(struct {
			S   []model.Sensitivity
			C   []model.Category
			P   []model.Purpose
			L   []model.Legalisation
			E   bool
			EAt any
		}{r.Sensitivities, r.Categories, r.Purposes, r.Legalisations, r.Config.GdprEnforced, r.Config.EnforcementStoppedAt})
		return v
	}
	return string(part(a)) != string(part(b))
}

// PreviewChange evaluates every indexed subject under the current index
// and under next (the registers a write would save) at now. stopAfter > 0
// stops the scan once more deletions than stopAfter are found (enough to
// refuse an unconfirmed change).
func (e *Executor) PreviewChange(ctx context.Context, cur *model.Index, next *model.Registers, now time.Time, stopAfter int) (ChangePreview, error) {
	nix, err := model.NewIndex(next, cur.Version+1)
	if err != nil {
		return ChangePreview{}, fmt.Errorf("preview: %w", err)
	}
	p := ChangePreview{Bits: map[string]map[string]int{}}
	cursor := ""
	for {
		ds, nc, err := e.o.Store.ScanDue(ctx, cursor, 1000)
		if err != nil {
			return p, fmt.Errorf("preview: %w", err)
		}
		snaps, err := snapshots(ctx, e.o.Store, ds)
		if err != nil {
			return p, fmt.Errorf("preview: %w", err)
		}
		for i := range snaps {
			e.previewOne(cur, nix, &snaps[i], now, &p)
		}
		if stopAfter > 0 && p.Deletions.Total > stopAfter {
			p.Partial = nc != ""
			return p, nil
		}
		if nc == "" {
			return p, nil
		}
		cursor = nc
	}
}

func (e *Executor) previewOne(cur, nix *model.Index, snap *cache.Snapshot, now time.Time, p *ChangePreview) {
	e.previewPair(cur, snap, nix, snap, now, p)
}

// previewPair compares a subject as it is (snap under cur) with what a
// change makes of it (next under nix).
func (e *Executor) previewPair(cur *model.Index, snap *cache.Snapshot, nix *model.Index, next *cache.Snapshot, now time.Time, p *ChangePreview) {
	p.Subjects++
	before := cache.ComputeFacts(cur, snap.Record, snap.Origin, snap.Inherited, now).State
	after := cache.ComputeFacts(nix, next.Record, next.Origin, next.Inherited, now).State
	changed := false
	for b := 0; b <= model.MaxBit; b++ {
		sb, sa := cur.ByBit[b], nix.ByBit[b]
		if sb == nil && sa == nil {
			continue
		}
		from, to := before.Bit(b), after.Bit(b)
		if sb == nil {
			from = lifecycle.Obliviated
		}
		if from == to && sb != nil && sa != nil {
			continue
		}
		name := fmt.Sprint(b)
		if sa != nil {
			name = sa.ID
		} else if sb != nil {
			name = sb.ID
		}
		if p.Bits[name] == nil {
			p.Bits[name] = map[string]int{}
		}
		key := from.String() + "→" + to.String()
		if sa == nil {
			key = from.String() + "→undefined"
		}
		p.Bits[name][key]++
		changed = true
	}
	if changed {
		p.Changed++
	}
	wb := e.Decide(cur, snap, &before)
	wa := e.Decide(nix, next, &after)
	if !wa.Any() {
		return
	}
	bitsOf := func(w Work, st *lifecycle.State) uint32 {
		if w.Whole {
			return st.Obliviated
		}
		return w.Erase | w.Missing
	}
	if bitsOf(wa, &after)&^bitsOf(wb, &before) == 0 && wa.Whole == wb.Whole {
		return // the old registers would have asked for the same
	}
	switch {
	case wa.Whole && wa.Missing == 0:
		p.Deletions.Wipes++
		p.Deletions.Total++
	case wa.Whole:
		p.Deletions.NotExecutable++
	default:
		if wa.Erase != 0 {
			p.Deletions.Erasures++
			p.Deletions.Total++
		}
		if wa.Missing != 0 {
			p.Deletions.NotExecutable++
		}
	}
}

// PreviewSubject is what setting a subject's origin and parent (PUT
// /v1/subjects/…) does to it now: its bits changing state and the deletion
// work the sweeper would create because of it (an origin dated back can
// make its data due for deletion at once).
func (e *Executor) PreviewSubject(ctx context.Context, ix *model.Index, sub model.Subject, now time.Time) (ChangePreview, error) {
	snaps, err := e.o.Store.Snapshots(ctx, []model.SubjectRef{sub.Ref})
	if err != nil {
		return ChangePreview{}, fmt.Errorf("preview: %w", err)
	}
	p := ChangePreview{Bits: map[string]map[string]int{}}
	if len(snaps) != 1 {
		return p, fmt.Errorf("preview: %d snapshots for one subject", len(snaps))
	}
	snap := &snaps[0]
	next := *snap
	next.Record.Subject.Ref, next.Record.Known = sub.Ref, true
	next.Record.Subject.Origin, next.Origin = sub.Origin, cache.OriginSet
	next.Record.Subject.Parent = sub.Parent
	switch {
	case sub.Parent == nil:
		next.Inherited = nil
	case snap.Record.Subject.Parent == nil || *snap.Record.Subject.Parent != *sub.Parent:
		prec, err := e.o.Store.Subject(ctx, *sub.Parent)
		if err != nil && !errors.Is(err, cache.ErrNotFound) {
			return p, fmt.Errorf("preview: parent: %w", err)
		}
		next.Inherited = prec.Evidence
	}
	e.previewPair(ix, snap, ix, &next, now, &p)
	return p, nil
}

// PreviewRevoke is what revoking one evidence record of a subject does now:
// to the subject and to the subjects inheriting its evidence (its phone
// numbers). It returns cache.ErrNotFound when the subject has no such
// record.
func (e *Executor) PreviewRevoke(ctx context.Context, ix *model.Index, ref model.SubjectRef, evidenceID string, now time.Time) (ChangePreview, error) {
	p := ChangePreview{Bits: map[string]map[string]int{}}
	without := func(evs []model.Evidence) []model.Evidence {
		out := make([]model.Evidence, 0, len(evs))
		for _, ev := range evs {
			if ev.ID != evidenceID {
				out = append(out, ev)
			}
		}
		return out
	}
	snaps, err := e.o.Store.Snapshots(ctx, []model.SubjectRef{ref})
	if err != nil {
		return p, fmt.Errorf("preview: %w", err)
	}
	if len(snaps) != 1 || len(without(snaps[0].Record.Evidence)) == len(snaps[0].Record.Evidence) {
		return p, fmt.Errorf("preview: evidence %q: %w", evidenceID, cache.ErrNotFound)
	}
	next := snaps[0]
	next.Record.Evidence = without(next.Record.Evidence)
	e.previewPair(ix, &snaps[0], ix, &next, now, &p)
	children, err := e.o.Store.Children(ctx, ref)
	if err != nil {
		return p, fmt.Errorf("preview: children: %w", err)
	}
	if len(children) == 0 {
		return p, nil
	}
	cs, err := e.o.Store.Snapshots(ctx, children)
	if err != nil {
		return p, fmt.Errorf("preview: children: %w", err)
	}
	for i := range cs {
		cn := cs[i]
		cn.Inherited = without(cn.Inherited)
		e.previewPair(ix, &cs[i], ix, &cn, now, &p)
	}
	return p, nil
}

// Transition is one sensitivity bit changing state at an instant.
type Transition struct {
	At          time.Time `json:"at"`
	Bit         int       `json:"bit"`
	Sensitivity string    `json:"sensitivity"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	// Executable, for a move to obliviated: whether a deletion step is
	// configured for it (the wipe plan when the whole subject goes, else
	// the sensitivity's erasure steps). Not executable bits are reported,
	// never dropped.
	Executable *bool `json:"executable,omitempty"`
	// Pending: obliviated already, its deletion not yet created (the
	// sweeper is behind, or GDPR is not enforced).
	Pending bool `json:"pending,omitempty"`
}

// EvidenceEnd is an evidence record reaching the end of its retention.
type EvidenceEnd struct {
	At             time.Time `json:"at"`
	EvidenceID     string    `json:"evidence_id"`
	LegalisationID string    `json:"legalisation_id"`
}

// DueSubject is one subject of the due report.
type DueSubject struct {
	Subject     model.SubjectRef `json:"subject"`
	Transitions []Transition     `json:"transitions"`
	Evidence    []EvidenceEnd    `json:"evidence_purges,omitempty"`
}

// maxSteps bounds the transitions followed per subject in a report.
const maxSteps = 32

// DueReport lists the subjects with a lifecycle transition (or an evidence
// purge) between now and now+within — the weekly "records due for
// deletion" — with the bits and instants. At most limit subjects are read
// from the due index (truncated reports so).
func (e *Executor) DueReport(ctx context.Context, ix *model.Index, now time.Time, within time.Duration, limit int) ([]DueSubject, bool, error) {
	until := now.Add(within)
	ds, err := e.o.Store.Due(ctx, until, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("due report: %w", err)
	}
	truncated := len(ds) > limit
	if truncated {
		ds = ds[:limit]
	}
	refs := make([]model.SubjectRef, len(ds))
	for i, d := range ds {
		refs[i] = d.Ref
	}
	snaps, err := e.o.Store.Snapshots(ctx, refs)
	if err != nil {
		return nil, false, fmt.Errorf("due report: %w", err)
	}
	out := []DueSubject{}
	for i := range snaps {
		snap := &snaps[i]
		ds := DueSubject{Subject: refs[i], Transitions: []Transition{}}
		st := cache.ComputeFacts(ix, snap.Record, snap.Origin, snap.Inherited, now).State
		restricted := snap.Record.Restriction != ""
		if !restricted {
			if pend := st.Obliviated &^ snap.Applied.Obliviated & ix.Defined; pend != 0 {
				for _, b := range bits(pend) {
					ds.Transitions = append(ds.Transitions, e.transition(ix, snap, now, b, lifecycle.Obliviated, lifecycle.Obliviated, &st, true))
				}
			}
			prev := st
			for n := 0; n < maxSteps && !prev.Next.IsZero() && !prev.Next.After(until); n++ {
				at := prev.Next
				next := cache.ComputeFacts(ix, snap.Record, snap.Origin, snap.Inherited, at).State
				for b := 0; b <= model.MaxBit; b++ {
					if ix.ByBit[b] == nil {
						continue
					}
					if f, t := prev.Bit(b), next.Bit(b); f != t {
						ds.Transitions = append(ds.Transitions, e.transition(ix, snap, at, b, f, t, &next, false))
					}
				}
				prev = next
			}
		}
		for _, ev := range snap.Record.Evidence {
			if end, ok := lifecycle.Retention(ix, &ev); ok && !end.After(until) {
				ds.Evidence = append(ds.Evidence, EvidenceEnd{At: end, EvidenceID: ev.ID, LegalisationID: ev.LegalisationID})
			}
		}
		if len(ds.Transitions) > 0 || len(ds.Evidence) > 0 {
			out = append(out, ds)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return first(out[a]).Before(first(out[b])) })
	return out, truncated, nil
}

func first(d DueSubject) time.Time {
	var t time.Time
	for _, tr := range d.Transitions {
		if t.IsZero() || tr.At.Before(t) {
			t = tr.At
		}
	}
	for _, ev := range d.Evidence {
		if t.IsZero() || ev.At.Before(t) {
			t = ev.At
		}
	}
	return t
}

func bits(mask uint32) []int {
	var out []int
	for b := 0; b <= model.MaxBit; b++ {
		if mask&(1<<uint(b)) != 0 {
			out = append(out, b)
		}
	}
	return out
}

func (e *Executor) transition(ix *model.Index, snap *cache.Snapshot, at time.Time, b int, from, to lifecycle.BitState, after *lifecycle.State, pending bool) Transition {
	tr := Transition{At: at.UTC(), Bit: b, Sensitivity: ix.ByBit[b].ID, From: from.String(), To: to.String(), Pending: pending}
	if to == lifecycle.Obliviated {
		var ok bool
		ref := snap.Record.Subject.Ref
		if after.Gone() {
			_, ok = e.o.Plans.Wipe[ref.Entity]
		} else {
			_, _, missing := e.o.Plans.EraseSteps(ix, ref, 1<<uint(b))
			ok = missing == 0
		}
		tr.Executable = &ok
	}
	if pending {
		tr.From = "obliviated"
	}
	return tr
}
