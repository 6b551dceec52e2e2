package adminapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/forget"
	"github.com/gdprgate/gdprgate/policy/model"
)

// deletionView is a deletion record with its bits named.
type deletionView struct {
	cache.WipeRecord
	Sensitivities []string `json:"sensitivities,omitempty"`
}

var deletionStates = map[string]bool{
	cache.WipeHeld: true, cache.WipeQueued: true, cache.WipeRunning: true, cache.WipeDone: true, cache.WipeFailed: true,
	cache.WipeRejected: true, cache.WipeNotExecutable: true, cache.WipeSuspended: true, cache.WipeCancelled: true,
}

// listScan bounds the records examined for a filtered list (newest first).
const listScan = 10000

// handleDeletionList lists deletion work: GET /v1/deletions?state=held
// lists what waits for an approval, oldest first; other states (or none)
// the newest records of the most recent 10000.
func (s *Server) handleDeletionList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	state, kind := q.Get("state"), q.Get("kind")
	var fes []model.FieldError
	if state != "" && !deletionStates[state] {
		fes = append(fes, model.FieldError{Field: "state", Reason: "must be one of held, queued, running, done, failed, rejected, not_executable, suspended, cancelled"})
	}
	if kind != "" && kind != cache.KindWipe && kind != cache.KindErasure && kind != cache.KindPurge {
		fes = append(fes, model.FieldError{Field: "kind", Reason: "must be wipe, erasure or purge"})
	}
	if fes != nil {
		writeValidation(w, fes)
		return
	}
	limit, ok := queryLimit(w, r, 100, 10000)
	if !ok {
		return
	}
	var recs []cache.WipeRecord
	var err error
	if state == cache.WipeHeld {
		recs, err = s.o.Store.HeldWipes(ctx, 0)
	} else {
		recs, err = s.o.Store.ListWipes(ctx, listScan)
	}
	if err != nil {
		s.storeFailed(w, r, "list deletions", err)
		return
	}
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	out := []deletionView{}
	for _, rec := range recs {
		k := rec.Kind
		if k == "" {
			k = cache.KindWipe
		}
		if state != "" && rec.Status != state || kind != "" && k != kind {
			continue
		}
		if len(out) == limit {
			break
		}
		v := deletionView{WipeRecord: rec}
		if rec.Bits != 0 {
			v.Sensitivities = forget.Sensitivities(ix, rec.Bits)
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"deletions": out, "count": len(out)})
}

// decisionInput is the optional body of an approval or rejection.
type decisionInput struct {
	// IDs and All (bulk only) say which held deletions; Kind narrows All
	// to one kind (wipe, erasure, purge).
	IDs  []string `json:"ids,omitempty"`
	All  bool     `json:"all,omitempty"`
	Kind string   `json:"kind,omitempty"`
	// Confirm passes the mass-deletion guard (approvals).
	Confirm bool `json:"confirm,omitempty"`
}

// readOptional decodes a body that may be empty.
func (s *Server) readOptional(w http.ResponseWriter, r *http.Request, out any) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.o.MaxBodyBytes))
	if err != nil {
		answerDecodeError(w, err, s.o.MaxBodyBytes)
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return true
	}
	if _, rerr := parseDoc(data, out, shapeOpts{}); rerr != nil {
		rerr.answer(w, s.o.MaxBodyBytes)
		return false
	}
	return true
}

func (s *Server) handleDeletionDecideOne(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in decisionInput
		if !s.readOptional(w, r, &in) {
			return
		}
		if len(in.IDs) > 0 || in.All || in.Kind != "" {
			writeValidation(w, []model.FieldError{{Field: "ids", Reason: "the deletion is the one in the path; use POST /v1/deletions:approve or :reject for several"}})
			return
		}
		id := r.PathValue("id")
		ds, ok := s.decide(w, r, []string{id}, approve, in.Confirm)
		if !ok {
			return
		}
		switch ds[0].Status {
		case "not_found":
			writeError(w, http.StatusNotFound, "not_found", "no deletion "+strconv.Quote(id))
			return
		case "not_held":
			writeError(w, http.StatusConflict, "not_held", "deletion "+strconv.Quote(id)+" is not held: "+ds[0].Error)
			return
		case forget.StatusNotDue:
			writeError(w, http.StatusConflict, forget.StatusNotDue, "deletion "+strconv.Quote(id)+" is not due any more ("+ds[0].Error+"); it stays held: reject it")
			return
		case "error":
			writeError(w, http.StatusServiceUnavailable, "store_unavailable", ds[0].Error)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"decisions": ds, "deletion": ds[0].Record})
	}
}

// maxBulk bounds one bulk decision.
const maxBulk = 10000

func (s *Server) handleDeletionDecideBulk(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in decisionInput
		if !s.readOptional(w, r, &in) {
			return
		}
		switch {
		case in.All && len(in.IDs) > 0:
			writeValidation(w, []model.FieldError{{Field: "ids", Reason: "give ids or \"all\": true, not both"}})
			return
		case !in.All && len(in.IDs) == 0:
			writeValidation(w, []model.FieldError{{Field: "ids", Reason: "name the held deletions, or send \"all\": true"}})
			return
		case len(in.IDs) > maxBulk:
			writeValidation(w, []model.FieldError{{Field: "ids", Reason: fmt.Sprintf("at most %d per request", maxBulk)}})
			return
		case in.Kind != "" && (!in.All || in.Kind != cache.KindWipe && in.Kind != cache.KindErasure && in.Kind != cache.KindPurge):
			writeValidation(w, []model.FieldError{{Field: "kind", Reason: "narrows \"all\": wipe, erasure or purge"}})
			return
		}
		ids := in.IDs
		if in.All {
			held, err := s.o.Store.HeldWipes(r.Context(), 0)
			if err != nil {
				s.storeFailed(w, r, "list held deletions", err)
				return
			}
			for _, h := range held {
				k := h.Kind
				if k == "" {
					k = cache.KindWipe
				}
				if h.Parent == "" && len(ids) < maxBulk && (in.Kind == "" || in.Kind == k) {
					ids = append(ids, h.ID)
				}
			}
		}
		ds, ok := s.decide(w, r, ids, approve, in.Confirm)
		if !ok {
			return
		}
		n := 0
		for _, d := range ds {
			if d.Status == cache.WipeQueued || d.Status == cache.WipeRejected {
				n++
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"decisions": ds, "decided": n})
	}
}

// decide runs the executor's decision and answers its refusals; with
// ?dry_run=true it answers the decision's preview instead.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, ids []string, approve bool, confirm bool) ([]forget.Decision, bool) {
	if r.URL.Query().Get("dry_run") == "true" {
		s.previewDecision(w, r, ids, approve)
		return nil, false
	}
	ds, err := s.o.Forget.DecideHeld(r.Context(), ids, approve, actor(r.Context()), confirm)
	var ge *forget.GuardError
	if errors.As(err, &ge) {
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, "mass_deletion_guard", ge.Error()+" (\"confirm\": true)")
		return nil, false
	}
	if err != nil {
		s.storeFailed(w, r, "decide deletions", err)
		return nil, false
	}
	if ds == nil {
		ds = []forget.Decision{}
	}
	return ds, true
}

// decisionPreview is the answer of a decision's dry run.
type decisionPreview struct {
	DryRun bool `json:"dry_run"`
	// Decisions are the statuses the deletions would get (queued,
	// rejected) or why they would not be decided (not_held, not_found,
	// not_due).
	Decisions []forget.Decision `json:"decisions"`
	// Deletions are the held records that would be decided, with the
	// backend calls each one makes.
	Deletions []deletionView `json:"deletions"`
	// Guard: the approvals the mass-deletion guard would count, and its
	// limit per minute across every sidecar ("confirm": true beyond it).
	Guard struct {
		Asked     int `json:"asked"`
		PerMinute int `json:"per_minute"`
	} `json:"guard"`
	SuspendWipes     bool `json:"suspend_wipes"`
	SuspendWipeIssue bool `json:"suspend_wipe_issue"`
}

// previewDecision answers what an approval or rejection would do, and
// changes nothing (no decision, no guard count, no audit entry).
func (s *Server) previewDecision(w http.ResponseWriter, r *http.Request, ids []string, approve bool) {
	ctx := r.Context()
	p, err := s.o.Forget.PlanDecision(ctx, ids, approve)
	if err != nil {
		s.storeFailed(w, r, "preview the decision", err)
		return
	}
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	out := decisionPreview{DryRun: true, Decisions: []forget.Decision{}, Deletions: []deletionView{}}
	out.Guard.Asked, out.Guard.PerMinute = p.Admit, s.o.Forget.PerMinute()
	if ix.Registers != nil {
		out.SuspendWipes, out.SuspendWipeIssue = ix.Registers.Config.SuspendWipes, ix.Registers.Config.SuspendWipeIssue
	}
	for _, d := range p.Decisions {
		out.Decisions = append(out.Decisions, forget.Decision{ID: d.ID, Status: d.Status, Error: d.Error})
		if d.Status != cache.WipeQueued && d.Status != cache.WipeRejected {
			continue
		}
		v := deletionView{WipeRecord: *d.Record}
		if d.Record.Bits != 0 {
			v.Sensitivities = forget.Sensitivities(ix, d.Record.Bits)
		}
		out.Deletions = append(out.Deletions, v)
	}
	writeJSON(w, http.StatusOK, out)
}

// parseWithin reads a report window: a Go duration ("36h") or days ("7d").
func parseWithin(v string) (time.Duration, error) {
	if v == "" {
		return 7 * 24 * time.Hour, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, errors.New("must be a number of days (7d) or a duration (36h)")
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, errors.New("must be a number of days (7d) or a duration (36h)")
		}
	}
	if d < 0 || d > 366*24*time.Hour {
		return 0, errors.New("must be between 0 and 366d")
	}
	return d, nil
}

// handleDueReport is the weekly "records due for deletion": subjects with a
// lifecycle transition or an evidence purge within ?within=, with the bits,
// instants and whether a deletion step is configured. Subjects are shown
// in clear (this needs the export_evidence scope); the log line counts them.
func (s *Server) handleDueReport(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	within, err := parseWithin(r.URL.Query().Get("within"))
	if err != nil {
		writeValidation(w, []model.FieldError{{Field: "within", Reason: err.Error()}})
		return
	}
	limit, ok := queryLimit(w, r, 1000, 10000)
	if !ok {
		return
	}
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	now := s.o.Clock().UTC()
	subjects, truncated, err := s.o.Forget.DueReport(ctx, ix, now, within, limit)
	if err != nil {
		s.storeFailed(w, r, "due report", err)
		return
	}
	s.log.InfoContext(ctx, "due report", "actor", actor(ctx), "within", within.String(), "subjects", len(subjects))
	writeJSON(w, http.StatusOK, map[string]any{
		"at": now, "until": now.Add(within), "within": r.URL.Query().Get("within"),
		"gdpr_enforced": ix.Registers.Config.GdprEnforced, "deletions": deletionMode(s.o.Forget),
		"subjects": subjects, "truncated": truncated,
	})
}

func deletionMode(e *forget.Executor) string {
	if e.Auto() {
		return "auto"
	}
	return "hold"
}

// handleLifecycle shows the lifecycle executor's state.
func (s *Server) handleLifecycle(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := s.o.Clock()
	total, due, err := s.o.Store.DueCount(ctx, now)
	if err != nil {
		s.storeFailed(w, r, "due index", err)
		return
	}
	held, err := s.o.Store.HeldWipes(ctx, 0)
	if err != nil {
		s.storeFailed(w, r, "held deletions", err)
		return
	}
	p, err := s.o.Store.Recompute(ctx)
	if err != nil {
		s.storeFailed(w, r, "recompute progress", err)
		return
	}
	rc := map[string]any{"version": p.Version, "scanned": p.Scanned, "done": p.Done, "started": p.Started}
	if p.Done {
		rc["finished"] = p.Finished
	} else if total > 0 {
		rc["progress"] = min(float64(p.Scanned)/float64(total), 1)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"deletions": deletionMode(s.o.Forget), "max_deletions_per_change": s.o.MaxDeletionsPerChange,
		"indexed_subjects": total, "due_subjects": due, "held_deletions": len(held), "recompute": rc,
	})
}
