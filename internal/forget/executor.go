package forget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// ExecutorOptions configure an Executor. Store is required.
type ExecutorOptions struct {
	Store  cache.Store
	Plans  Plans
	Hasher audit.Hasher
	Logger *slog.Logger
	// Auto queues lifecycle deletions at once (lifecycle.deletions: auto);
	// otherwise they are held for an approval.
	Auto bool
	// PerMinute is the mass-deletion guard (wipes.per_minute, default 10):
	// more deletions than this in a minute, across every sidecar, need a
	// confirmation.
	PerMinute int
	// Clock is "now" (default time.Now).
	Clock      func() time.Time
	Registerer prometheus.Registerer
}

// Executor creates, admits and decides deletion work. It is shared by the
// admin API (WipeCtcAll requests, approvals), the sweeper (lifecycle
// deletions) and the preview of register changes, so that all of them
// apply the same rules.
type Executor struct {
	o   ExecutorOptions
	log *slog.Logger
	m   *metrics
}

// NewExecutor checks o and fills its defaults.
func NewExecutor(o ExecutorOptions) (*Executor, error) {
	if o.Store == nil {
		return nil, errors.New("forget: ExecutorOptions.Store is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PerMinute <= 0 {
		o.PerMinute = 10
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Plans.Wipe == nil {
		o.Plans.Wipe = Plan{}
	}
	return &Executor{o: o, log: o.Logger.With("component", "forget"), m: newMetrics(o.Registerer)}, nil
}

// Plans are the deletions the executor can run.
func (e *Executor) Plans() Plans { return e.o.Plans }

// PerMinute is the mass-deletion guard's limit per minute.
func (e *Executor) PerMinute() int { return e.o.PerMinute }

// Auto reports whether lifecycle deletions are queued without approval.
func (e *Executor) Auto() bool { return e.o.Auto }

// GuardError is the mass-deletion guard's refusal.
type GuardError struct {
	Limit, InWindow, Asked int
}

func (g *GuardError) Error() string {
	return fmt.Sprintf("mass-deletion guard: %d deletions were admitted in the last minute (limit %d across every sidecar); %d more need a confirmation", g.InWindow, g.Limit, g.Asked)
}

// Admit passes n deletions through the mass-deletion guard, counted in the
// store so that every sidecar shares one window. Confirmed deletions always
// pass and are counted too.
func (e *Executor) Admit(ctx context.Context, n int, confirm bool) error {
	ok, c, err := e.o.Store.AdmitDeletions(ctx, n, e.o.PerMinute, time.Minute, e.o.Clock(), confirm)
	if err != nil {
		return fmt.Errorf("mass-deletion guard: %w", err)
	}
	if !ok {
		e.m.guardRefusals.Inc()
		return &GuardError{Limit: e.o.PerMinute, InWindow: c, Asked: n}
	}
	return nil
}

// hashID is the subject's keyed hash without its prefix, for deletion ids.
func (e *Executor) hashID(ref model.SubjectRef) string {
	return strings.TrimPrefix(e.o.Hasher.Subject(ref), "h:")
}

// maxCascade bounds a cascade: a subject's children, their children, …
const (
	maxCascade      = 1000
	maxCascadeDepth = 4
)

// cascade returns the subjects below ref (children, grandchildren, …),
// nearest first, at most maxCascade.
func (e *Executor) cascade(ctx context.Context, ref model.SubjectRef) ([]model.SubjectRef, error) {
	seen := map[model.SubjectRef]bool{ref: true}
	var out []model.SubjectRef
	level := []model.SubjectRef{ref}
	for depth := 0; depth < maxCascadeDepth && len(level) > 0; depth++ {
		var next []model.SubjectRef
		for _, r := range level {
			cs, err := e.o.Store.Children(ctx, r)
			if err != nil {
				return nil, fmt.Errorf("children: %w", err)
			}
			for _, c := range cs {
				if seen[c] {
					continue
				}
				seen[c] = true
				if len(out) >= maxCascade {
					return nil, fmt.Errorf("cascade: more than %d related subjects", maxCascade)
				}
				out = append(out, c)
				next = append(next, c)
			}
		}
		level = next
	}
	return out, nil
}

// wipeGroup builds the wipe of ref and the cascaded wipes of the subjects
// below it, all with status, and one audit entry each.
func (e *Executor) wipeGroup(ctx context.Context, id string, ref model.SubjectRef, status, reason, scope, actor string, now time.Time) ([]cache.WipeRecord, []audit.Entry, error) {
	children, err := e.cascade(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	now = now.UTC()
	recs := []cache.WipeRecord{{
		ID: id, Subject: ref, Scope: scope, Status: status, Steps: Steps(e.o.Plans.Wipe, ref), Kind: cache.KindWipe,
		Reason: reason, RequestedBy: actor, CreatedAt: now, UpdatedAt: now,
	}}
	for _, c := range children {
		recs = append(recs, cache.WipeRecord{
			ID: id + "-c" + e.hashID(c)[:16], Subject: c, Scope: scope, Status: status, Steps: Steps(e.o.Plans.Wipe, c),
			Kind: cache.KindWipe, Reason: cache.ReasonCascade, Parent: id, RequestedBy: actor, CreatedAt: now, UpdatedAt: now,
		})
	}
	entries := make([]audit.Entry, len(recs))
	for i, r := range recs {
		action := "wipe.request"
		if r.Parent != "" {
			action = "wipe.cascade"
		}
		if status == cache.WipeHeld {
			action = "deletion.hold"
		}
		entries[i] = audit.Entry{
			Time: now, Actor: actor, Action: action, Object: "wipes/" + r.ID, Subject: e.o.Hasher.Subject(r.Subject),
			Detail: map[string]string{"kind": cache.KindWipe, "reason": r.Reason, "steps": strconv.Itoa(len(r.Steps))},
		}
		if r.Parent != "" {
			entries[i].Detail["parent"] = r.Parent
		}
	}
	return recs, entries, nil
}

// WipeRequest is a WipeCtcAll request.
type WipeRequest struct {
	Subject model.SubjectRef
	Scope   string
	Actor   string
	// Confirm passes the mass-deletion guard.
	Confirm bool
}

// Request queues the wipe of a subject and of every subject below it
// (a contact's phone numbers), restricting all of them at once, each wipe
// with its own steps and audit entry. The guard counts every wipe.
func (e *Executor) Request(ctx context.Context, in WipeRequest) ([]cache.WipeRecord, error) {
	recs, entries, err := e.Preview(ctx, in)
	if err != nil {
		return nil, err
	}
	for i := range entries {
		entries[i].Detail["confirm"] = strconv.FormatBool(in.Confirm)
	}
	if err := e.Admit(ctx, len(recs), in.Confirm); err != nil {
		return nil, err
	}
	if err := e.o.Store.EnqueueWipes(ctx, recs, entries); err != nil {
		return nil, fmt.Errorf("enqueue wipe: %w", err)
	}
	e.m.deletions.WithLabelValues(cache.KindWipe, cache.WipeQueued).Add(float64(len(recs)))
	return recs, nil
}

// Preview is what Request would queue, without queuing it.
func (e *Executor) Preview(ctx context.Context, in WipeRequest) ([]cache.WipeRecord, []audit.Entry, error) {
	now := e.o.Clock()
	return e.wipeGroup(ctx, cache.NewID("w-"), in.Subject, cache.WipeQueued, cache.ReasonRequest, in.Scope, in.Actor, now)
}

// Work is the deletion work one subject's lifecycle asks for now.
type Work struct {
	// Applied is what to remember once the work exists.
	Applied cache.Applied
	// Whole: every bit is obliviated: the entity's WipeCtcAll plan.
	Whole bool
	// Erase are the newly obliviated bits with erasure steps; Missing
	// those without (or, for a whole subject, every bit when the entity
	// has no wipe plan): reported not executable.
	Erase, Missing uint32
	Steps          []cache.WipeStep
}

// Any reports whether there is something to create.
func (w Work) Any() bool { return w.Whole || w.Erase != 0 || w.Missing != 0 }

// Decide is the deletion work the lifecycle state st asks for a subject
// whose last applied state is snap.Applied: bits obliviated since then are
// forgotten — the whole subject by its wipe plan when every bit is
// obliviated, else the new bits by their erasure steps. A restricted
// (wiped) subject asks for nothing more.
func (e *Executor) Decide(ix *model.Index, snap *cache.Snapshot, st *lifecycle.State) Work {
	w := Work{Applied: snap.Applied}
	if snap.Record.Restriction != "" {
		return w
	}
	newly := st.Obliviated &^ snap.Applied.Obliviated & ix.Defined
	// Bits no longer obliviated (new evidence) may be forgotten again later.
	w.Applied.Obliviated = st.Obliviated & ix.Defined
	if newly == 0 {
		return w
	}
	w.Applied.Round++
	ref := snap.Record.Subject.Ref
	if st.Gone() {
		w.Whole = true
		if _, ok := e.o.Plans.Wipe[ref.Entity]; !ok {
			w.Missing = newly
		}
		return w
	}
	w.Steps, w.Erase, w.Missing = e.o.Plans.EraseSteps(ix, ref, newly)
	return w
}

// Create stores the deletion work w of a subject: held for an approval, or
// queued when deletions are automatic and the guard admits them (held for
// the guard otherwise); bits without steps as a not-executable record. Ids
// derive from the subject and the work, so a sweeper repeating a batch
// creates nothing twice.
func (e *Executor) Create(ctx context.Context, ix *model.Index, ref model.SubjectRef, w Work) error {
	if !w.Any() {
		return nil
	}
	now := e.o.Clock().UTC()
	base := "lc-" + e.hashID(ref) + "-" + strconv.Itoa(w.Applied.Round)
	status, heldFor := cache.WipeHeld, "approval"
	if w.Whole && w.Missing == 0 || w.Erase != 0 {
		if e.o.Auto {
			n := 1
			if w.Whole {
				cs, err := e.cascade(ctx, ref)
				if err != nil {
					return err
				}
				n += len(cs)
			}
			var ge *GuardError
			switch err := e.Admit(ctx, n, false); {
			case err == nil:
				status, heldFor = cache.WipeQueued, ""
			case errors.As(err, &ge):
				heldFor = "mass_deletion_guard"
				e.log.WarnContext(ctx, "lifecycle deletion held by the mass-deletion guard", "subject", e.o.Hasher.Subject(ref), "in_window", ge.InWindow)
			default:
				return err
			}
		}
		var recs []cache.WipeRecord
		var entries []audit.Entry
		if w.Whole {
			var err error
			recs, entries, err = e.wipeGroup(ctx, base+"-w", ref, status, cache.ReasonLifecycle, "obliviation", "lifecycle", now)
			if err != nil {
				return err
			}
			for i := range entries {
				entries[i].Action = "deletion.create"
				entries[i].Detail["status"] = status
			}
		} else {
			id := base + "-e" + strconv.FormatUint(uint64(w.Erase), 16)
			recs = []cache.WipeRecord{{
				ID: id, Subject: ref, Scope: "obliviation", Status: status, Steps: w.Steps, Kind: cache.KindErasure,
				Reason: cache.ReasonLifecycle, Bits: w.Erase, RequestedBy: "lifecycle", CreatedAt: now, UpdatedAt: now,
			}}
			entries = []audit.Entry{{
				Time: now, Actor: "lifecycle", Action: "deletion.create", Object: "wipes/" + id, Subject: e.o.Hasher.Subject(ref),
				Detail: map[string]string{"kind": cache.KindErasure, "status": status, "sensitivities": strings.Join(Sensitivities(ix, w.Erase), ","), "steps": strconv.Itoa(len(w.Steps))},
			}}
		}
		for i := range recs {
			recs[i].HeldFor = heldFor
		}
		if err := e.enqueue(ctx, recs, entries); err != nil {
			return err
		}
	}
	if w.Missing != 0 {
		kind := cache.KindErasure
		if w.Whole {
			kind = cache.KindWipe
		}
		id := base + "-x" + strconv.FormatUint(uint64(w.Missing), 16)
		rec := cache.WipeRecord{
			ID: id, Subject: ref, Scope: "obliviation", Status: cache.WipeNotExecutable, Kind: kind, Reason: cache.ReasonLifecycle,
			Bits: w.Missing, RequestedBy: "lifecycle", CreatedAt: now, UpdatedAt: now,
			Error: "no step is configured for " + strings.Join(Sensitivities(ix, w.Missing), ", ") + " of entity " + ref.Entity,
		}
		entry := audit.Entry{
			Time: now, Actor: "lifecycle", Action: "deletion.not_executable", Object: "wipes/" + id, Subject: e.o.Hasher.Subject(ref),
			Detail: map[string]string{"kind": kind, "sensitivities": strings.Join(Sensitivities(ix, w.Missing), ",")},
		}
		if err := e.enqueue(ctx, []cache.WipeRecord{rec}, []audit.Entry{entry}); err != nil {
			return err
		}
		e.log.WarnContext(ctx, "obliviated data with no deletion step configured", "subject", entry.Subject, "sensitivities", entry.Detail["sensitivities"])
	}
	return nil
}

// enqueue stores records, treating an existing id as already created.
func (e *Executor) enqueue(ctx context.Context, recs []cache.WipeRecord, entries []audit.Entry) error {
	err := e.o.Store.EnqueueWipes(ctx, recs, entries)
	if errors.Is(err, cache.ErrConflict) {
		return nil // created by an earlier pass (a sweeper that died before committing)
	}
	if err != nil {
		return fmt.Errorf("create deletion: %w", err)
	}
	for _, r := range recs {
		e.m.deletions.WithLabelValues(kindOf(r), r.Status).Inc()
	}
	return nil
}

func kindOf(r cache.WipeRecord) string {
	if r.Kind == "" {
		return cache.KindWipe
	}
	return r.Kind
}

// Decision is one approval's or rejection's outcome.
type Decision struct {
	ID     string            `json:"id"`
	Status string            `json:"status"` // queued, rejected, or the error code
	Error  string            `json:"error,omitempty"`
	Record *cache.WipeRecord `json:"-"`
}

// ErrNotHeld: the deletion is not (or no longer) held.
var ErrNotHeld = errors.New("the deletion is not held")

// StatusNotDue is the refusal of an approval whose lifecycle reason is gone:
// the data it deletes is no longer obliviated now (new evidence, a register
// change, enforcement switched off). Such a deletion stays held; rejecting
// it is the way to clear it (the sweeper creates a new one if the data is
// obliviated again).
const StatusNotDue = "not_due"

// DecisionPlan is what a decision would do, computed without deciding:
// Decisions (the status each deletion would get, or why it would not be
// decided; Record is the held record with its steps) and Admit, how many
// approvals the mass-deletion guard would count.
type DecisionPlan struct {
	Decisions []Decision
	Admit     int
}

// PlanDecision is the preview of DecideHeld: the deletions ids name and the
// wipes cascaded with them, each with the status a decision would give it.
// An approval is refused (StatusNotDue) for a lifecycle deletion whose data
// is not obliviated any more, with the wipes cascaded from it.
func (e *Executor) PlanDecision(ctx context.Context, ids []string, approve bool) (DecisionPlan, error) {
	held, err := e.o.Store.HeldWipes(ctx, 0)
	if err != nil {
		return DecisionPlan{}, fmt.Errorf("held deletions: %w", err)
	}
	byParent := map[string][]string{}
	for _, h := range held {
		if h.Parent != "" {
			byParent[h.Parent] = append(byParent[h.Parent], h.ID)
		}
	}
	var ix *model.Index
	status := cache.WipeRejected
	if approve {
		status = cache.WipeQueued
		if ix, err = e.o.Store.Registers(ctx); err != nil {
			return DecisionPlan{}, fmt.Errorf("registers: %w", err)
		}
	}
	var p DecisionPlan
	seen := map[string]bool{}
	notDue := map[string]string{} // lifecycle parent id → why
	for _, id := range ids {
		for _, x := range append([]string{id}, byParent[id]...) {
			if seen[x] {
				continue
			}
			seen[x] = true
			rec, err := e.o.Store.Wipe(ctx, x)
			if err != nil {
				p.Decisions = append(p.Decisions, decisionError(x, err))
				continue
			}
			if rec.Status != cache.WipeHeld {
				p.Decisions = append(p.Decisions, Decision{ID: x, Status: "not_held", Error: "it is " + rec.Status + ", not held", Record: &rec})
				continue
			}
			if approve {
				why, err := e.notDue(ctx, ix, rec, notDue)
				if err != nil {
					return DecisionPlan{}, err
				}
				if why != "" {
					p.Decisions = append(p.Decisions, Decision{ID: x, Status: StatusNotDue, Error: why, Record: &rec})
					continue
				}
				p.Admit++
			}
			p.Decisions = append(p.Decisions, Decision{ID: x, Status: status, Record: &rec})
		}
	}
	return p, nil
}

// notDue says why a held lifecycle deletion (or a wipe cascaded from one)
// has lost its reason, or "" when it is due. memo keeps the answers per
// lifecycle deletion id.
func (e *Executor) notDue(ctx context.Context, ix *model.Index, rec cache.WipeRecord, memo map[string]string) (string, error) {
	return notDue(ctx, e.o.Store, ix, rec, e.o.Clock(), memo)
}

func notDue(ctx context.Context, store cache.Store, ix *model.Index, rec cache.WipeRecord, now time.Time, memo map[string]string) (string, error) {
	if rec.Reason == cache.ReasonCascade && rec.Parent != "" {
		if why, ok := memo[rec.Parent]; ok {
			return why, nil
		}
		parent, err := store.Wipe(ctx, rec.Parent)
		if errors.Is(err, cache.ErrNotFound) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("parent deletion: %w", err)
		}
		if parent.Reason != cache.ReasonLifecycle {
			return "", nil
		}
		why, err := notDue(ctx, store, ix, parent, now, memo)
		if why != "" {
			why = "the deletion it cascades from is not due: " + why
		}
		return why, err
	}
	if rec.Reason != cache.ReasonLifecycle {
		return "", nil
	}
	if why, ok := memo[rec.ID]; ok {
		return why, nil
	}
	snaps, err := store.Snapshots(ctx, []model.SubjectRef{rec.Subject})
	if err != nil {
		return "", fmt.Errorf("subject state: %w", err)
	}
	why := ""
	if len(snaps) == 1 {
		st := cache.ComputeFacts(ix, snaps[0].Record, snaps[0].Origin, snaps[0].Inherited, now).State
		switch {
		case ix.Registers != nil && !ix.Registers.Config.GdprEnforced:
			why = "GDPR is not enforced: forgetting is not running"
		case kindOf(rec) == cache.KindWipe && !st.Gone():
			why = "the subject's data is no longer all obliviated"
		case kindOf(rec) == cache.KindErasure && rec.Bits&^st.Obliviated != 0:
			why = "no longer obliviated: " + strings.Join(Sensitivities(ix, rec.Bits&^st.Obliviated), ", ")
		}
	}
	memo[rec.ID] = why
	return why, nil
}

// DecideHeld approves or rejects held deletions and the cascaded wipes held
// with them (PlanDecision says which). Approvals pass the mass-deletion
// guard first, all together: either every one of them is admitted, or none
// is decided (GuardError).
func (e *Executor) DecideHeld(ctx context.Context, ids []string, approve bool, actor string, confirm bool) ([]Decision, error) {
	p, err := e.PlanDecision(ctx, ids, approve)
	if err != nil {
		return nil, err
	}
	if approve && p.Admit > 0 {
		if err := e.Admit(ctx, p.Admit, confirm); err != nil {
			return nil, err
		}
	}
	action, status := "deletion.reject", cache.WipeRejected
	if approve {
		action, status = "deletion.approve", cache.WipeQueued
	}
	now := e.o.Clock().UTC()
	out := make([]Decision, 0, len(p.Decisions))
	for _, d := range p.Decisions {
		if d.Status != status {
			if d.Status == StatusNotDue {
				e.log.InfoContext(ctx, "approval refused: the deletion is not due any more", "deletion", d.ID, "why", d.Error)
			}
			d.Record = nil
			out = append(out, d)
			continue
		}
		rec := d.Record
		entry := audit.Entry{Time: now, Actor: actor, Action: action, Object: "wipes/" + d.ID, Subject: e.o.Hasher.Subject(rec.Subject),
			Detail: map[string]string{"kind": kindOf(*rec), "confirm": strconv.FormatBool(confirm)}}
		got, err := e.o.Store.DecideWipe(ctx, d.ID, approve, actor, now, entry)
		if err != nil {
			out = append(out, decisionError(d.ID, err))
			continue
		}
		e.m.decisions.WithLabelValues(status).Inc()
		out = append(out, Decision{ID: d.ID, Status: status, Record: &got})
	}
	e.log.InfoContext(ctx, "held deletions decided", "actor", actor, "action", action, "count", len(out))
	return out, nil
}

func decisionError(id string, err error) Decision {
	switch {
	case errors.Is(err, cache.ErrNotFound):
		return Decision{ID: id, Status: "not_found", Error: "no such deletion"}
	case errors.Is(err, cache.ErrConflict):
		return Decision{ID: id, Status: "not_held", Error: err.Error()}
	}
	return Decision{ID: id, Status: "error", Error: err.Error()}
}
