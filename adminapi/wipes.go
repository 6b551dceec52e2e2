package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/forget"
	"github.com/gdprgate/gdprgate/policy/model"
)

// wipeRequest is the body of POST /v1/wipes.
type wipeRequest struct {
	Entity string `json:"entity"`
	ID     string `json:"id"`
	// Scope is free text kept with the wipe (e.g. "all").
	Scope string `json:"scope,omitempty"`
	// Confirm passes the mass-deletion guard.
	Confirm bool `json:"confirm,omitempty"`
}

// handleWipeCreate accepts a WipeCtcAll request: the subject, and every
// subject below it by parent links (a contact's phone numbers), is
// restricted at once (the gate answers 404 for them) and each one's wipe is
// queued durably for the worker with its own steps and audit entry, all
// atomically. ?dry_run=true answers 200 with the wipes it would queue and
// changes nothing.
//
// A subject already restricted by a wipe that is not cancelled or failed is
// not wiped twice: the existing wipe is answered with 200 (a client retrying
// a lost answer gets the same wipe).
//
// Mass-deletion guard: a request is refused with 429 (and Retry-After) when
// WipesPerMinute or more deletions were admitted in the preceding 60
// seconds across every sidecar (the count lives in the store), unless its
// body has "confirm": true. Every wipe of a cascade counts. Confirmed
// requests are always accepted and counted too; dry runs and refused
// requests are not counted.
func (s *Server) handleWipeCreate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var in wipeRequest
	if err := decodeBody(w, r, s.o.MaxBodyBytes, &in); err != nil {
		return
	}
	var fes []model.FieldError
	if strings.TrimSpace(in.Entity) == "" {
		fes = append(fes, model.FieldError{Field: "entity", Reason: "is required"})
	} else if _, ok := s.o.Forget.Plans().Wipe[in.Entity]; !ok {
		fes = append(fes, model.FieldError{Field: "entity", Reason: fmt.Sprintf("no wipe plan is configured for entity %q", in.Entity)})
	}
	if strings.TrimSpace(in.ID) == "" {
		fes = append(fes, model.FieldError{Field: "id", Reason: "is required"})
	} else if len(in.ID) > 256 {
		fes = append(fes, model.FieldError{Field: "id", Reason: "is longer than 256 bytes"})
	}
	if fes != nil {
		writeValidation(w, fes)
		return
	}
	ref := model.SubjectRef{Entity: in.Entity, ID: in.ID}
	req := forget.WipeRequest{Subject: ref, Scope: in.Scope, Actor: actor(ctx), Confirm: in.Confirm}

	if r.URL.Query().Get("dry_run") == "true" {
		ix, err := s.o.Store.Registers(ctx)
		if err != nil {
			s.storeFailed(w, r, "read config", err)
			return
		}
		recs, _, err := s.o.Forget.Preview(ctx, req)
		if err != nil {
			s.storeFailed(w, r, "plan the wipe", err)
			return
		}
		cfg := ix.Registers.Config
		for _, rec := range recs {
			for i, st := range rec.Steps {
				if cfg.SuspendWipes || (st.Issue && cfg.SuspendWipeIssue) {
					rec.Steps[i].Status = forget.StepSuspended
				}
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"dry_run": true, "subject": ref, "steps": recs[0].Steps, "cascade": cascadeView(recs[1:]),
			"suspend_wipes": cfg.SuspendWipes, "suspend_wipe_issue": cfg.SuspendWipeIssue,
		})
		return
	}

	rec, err := s.o.Store.Subject(ctx, ref)
	if err != nil {
		s.storeFailed(w, r, "read subject", err)
		return
	}
	if rec.Restriction != "" {
		prev, err := s.o.Store.Wipe(ctx, rec.Restriction)
		if err == nil && prev.Status != cache.WipeCancelled && prev.Status != cache.WipeFailed {
			w.Header().Set("Location", "/v1/wipes/"+prev.ID)
			writeJSON(w, http.StatusOK, map[string]any{"id": prev.ID, "status": prev.Status, "steps": prev.Steps, "existing": true})
			return
		}
	}
	recs, err := s.o.Forget.Request(ctx, req)
	var ge *forget.GuardError
	if errors.As(err, &ge) {
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, "mass_deletion_guard",
			fmt.Sprintf("%d deletions were admitted in the last minute across every sidecar (limit %d); send \"confirm\": true to proceed", ge.InWindow, ge.Limit))
		return
	}
	if err != nil {
		s.storeFailed(w, r, "enqueue wipe", err)
		return
	}
	wr := recs[0]
	s.log.InfoContext(ctx, "wipe requested", "actor", actor(ctx), "wipe", wr.ID, "subject", s.o.Hasher.Subject(ref), "cascade", len(recs)-1)
	w.Header().Set("Location", "/v1/wipes/"+wr.ID)
	writeJSON(w, http.StatusAccepted, map[string]any{"id": wr.ID, "status": wr.Status, "steps": wr.Steps, "cascade": cascadeView(recs[1:])})
}

// cascadeView shows the wipes queued with a subject's (its children's).
func cascadeView(recs []cache.WipeRecord) []map[string]any {
	out := make([]map[string]any, len(recs))
	for i, r := range recs {
		out[i] = map[string]any{"id": r.ID, "subject": r.Subject, "status": r.Status, "steps": r.Steps}
	}
	return out
}

func (s *Server) handleWipeGet(w http.ResponseWriter, r *http.Request) {
	rec, err := s.o.Store.Wipe(r.Context(), r.PathValue("id"))
	if err != nil {
		s.storeFailed(w, r, "wipe "+strconv.Quote(r.PathValue("id")), err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) handleWipeList(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryLimit(w, r, 50, 1000)
	if !ok {
		return
	}
	list, err := s.o.Store.ListWipes(r.Context(), limit)
	if err != nil {
		s.storeFailed(w, r, "list wipes", err)
		return
	}
	if list == nil {
		list = []cache.WipeRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"wipes": list})
}

// handleWipeCancel cancels a wipe that has not deleted anything: status
// queued or suspended and no step done. The restriction is lifted. A wipe
// that has started deleting cannot be undone: 409.
//
// Each change is stored atomically with its audit entry: the cancellation
// (wipe.cancel) with the record, the lift (subject.unrestrict) with the
// restriction. If the lift fails, the wipe stays cancelled and the subject
// restricted (fail closed); repeating the DELETE lifts it.
//
// The worker re-reads the wipe before every step, so a cancel that lands
// between claim and first deletion stops it; SaveWipe has no
// compare-and-set, so a cancel racing the very first step within
// milliseconds may still see that step run (the answer then says what the
// record says afterwards).
func (s *Server) handleWipeCancel(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	rec, err := s.o.Store.Wipe(ctx, id)
	if err != nil {
		s.storeFailed(w, r, "wipe "+strconv.Quote(id), err)
		return
	}
	now := s.o.Clock().UTC()
	subj := s.o.Hasher.Subject(rec.Subject)
	if rec.Status == cache.WipeCancelled {
		// Cancelled before: only a restriction left behind by a failed
		// lift remains to be done.
		cur, err := s.o.Store.Subject(ctx, rec.Subject)
		if err != nil {
			s.storeFailed(w, r, "read subject", err)
			return
		}
		if cur.Restriction != id {
			writeError(w, http.StatusConflict, "wipe_cancelled", fmt.Sprintf("wipe %s is already cancelled", id))
			return
		}
	} else {
		started := false
		for _, st := range rec.Steps {
			if st.Status == forget.StepDone || st.Attempts > 0 {
				started = true
			}
		}
		if (rec.Status != cache.WipeQueued && rec.Status != cache.WipeSuspended) || started {
			writeError(w, http.StatusConflict, "wipe_started",
				fmt.Sprintf("wipe %s is %s and has started deleting; it can no longer be cancelled", id, rec.Status))
			return
		}
		rec.Status, rec.UpdatedAt = cache.WipeCancelled, now
		for i := range rec.Steps {
			rec.Steps[i].Status = forget.StepSkipped
		}
		entry := audit.Entry{Time: now, Actor: actor(ctx), Action: "wipe.cancel", Object: "wipes/" + id, Subject: subj}
		if err := s.o.Store.SaveWipe(ctx, rec, entry); err != nil {
			s.storeFailed(w, r, "cancel wipe", err)
			return
		}
		s.log.InfoContext(ctx, "wipe cancelled", "actor", entry.Actor, "wipe", id, "subject", subj)
	}
	lift := audit.Entry{Time: now, Actor: actor(ctx), Action: "subject.unrestrict", Object: "wipes/" + id, Subject: subj}
	switch err := s.o.Store.Unrestrict(ctx, rec.Subject, id, lift); {
	case err == nil:
	case errors.Is(err, cache.ErrNotFound):
		// Another wipe restricts the subject now; it stays restricted.
	default:
		s.storeFailed(w, r, "lift the restriction (the wipe is cancelled; repeat the DELETE to lift it)", err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func queryLimit(w http.ResponseWriter, r *http.Request, def, max int) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > max {
		writeValidation(w, []model.FieldError{{Field: "limit", Reason: fmt.Sprintf("must be 1..%d", max)}})
		return 0, false
	}
	return n, true
}

// handleAudit pages the audit trail oldest first: {"entries":[…],"next":id};
// pass next as ?after= to continue. With Accept: application/x-ndjson or
// ?format=ndjson it streams every entry after ?after= as NDJSON (an export).
// Filters (actor, action, entity+id or subject, since, until; see
// auditFilter) apply to both; a filtered page reads at most auditScanMax
// entries and says with "end" whether the trail is exhausted.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	after := r.URL.Query().Get("after")
	f, ok := s.parseAuditFilter(w, r)
	if !ok {
		return
	}
	if wantsNDJSON(r) {
		entries, next, err := s.o.Store.Audit(ctx, after, 1000)
		if err != nil {
			s.storeFailed(w, r, "read audit", err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		for len(entries) > 0 {
			for _, e := range entries {
				ok, past := f.match(e)
				if past {
					return
				}
				if !ok {
					continue
				}
				if err := enc.Encode(e); err != nil {
					return // client went away
				}
			}
			if next == "" || next == after {
				break
			}
			after = next
			if entries, next, err = s.o.Store.Audit(ctx, after, 1000); err != nil {
				// Headers are sent: end the stream; the client sees it short.
				s.log.ErrorContext(ctx, "audit export interrupted", "err", err)
				return
			}
		}
		return
	}
	limit, ok := queryLimit(w, r, 100, 1000)
	if !ok {
		return
	}
	if !f.any() {
		entries, next, err := s.o.Store.Audit(ctx, after, limit)
		if err != nil {
			s.storeFailed(w, r, "read audit", err)
			return
		}
		if entries == nil {
			entries = []audit.Entry{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"entries": entries, "next": next, "end": len(entries) < limit})
		return
	}
	out := []audit.Entry{}
	scanned, end, next := 0, false, after
scan:
	for scanned < auditScanMax {
		entries, n, err := s.o.Store.Audit(ctx, next, min(1000, auditScanMax-scanned))
		if err != nil {
			s.storeFailed(w, r, "read audit", err)
			return
		}
		if len(entries) == 0 || n == "" || n == next {
			end = true
			break
		}
		for _, e := range entries {
			scanned++
			next = e.ID
			ok, past := f.match(e)
			if past {
				end = true
				break scan
			}
			if ok {
				out = append(out, e)
				if len(out) == limit {
					break scan
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": out, "next": next, "end": end, "scanned": scanned})
}
