package adminapi

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// evidenceInput is an evidence record as clients send it: the legalisation
// is named by legalisation_id or by its legal_key (imports from other
// systems know the key, not our id).
type evidenceInput struct {
	model.Evidence
	LegalKey string `json:"legal_key,omitempty"`
}

// evidenceWrite is what the server decides about records it stores.
type evidenceWrite struct {
	actor string
	now   time.Time
	// history: the token holds import_history, so records may carry their
	// real created_at, created_by and renewed_at.
	history bool
}

// resolveEvidence maps legal_key to the legalisation id, sets what the
// server sets and validates the record. historical reports a record that
// carried its own created_at (import_history).
//
// The manual's RetireFrom is the "Period to which the legalization may be
// used to create GdprEvidence evidence", and ActiveFrom the period from
// which it may: whether evidence may be created is judged at the instant it
// is created, which therefore is the server's clock, not the client's word.
// A client-supplied created_at (or renewed_at, or created_by) is refused
// unless the token may import history; a historical created_at is judged the
// same way (the legalisation must have been active then) and may not lie in
// the future.
func resolveEvidence(ix *model.Index, in *evidenceInput, w evidenceWrite) (historical bool, fes []model.FieldError) {
	if in.LegalKey != "" {
		l, ok := ix.ByLegalKey[in.LegalKey]
		switch {
		case !ok:
			return false, []model.FieldError{{Field: "legal_key", Reason: fmt.Sprintf("names no legalisation (%q)", in.LegalKey)}}
		case in.LegalisationID != "" && in.LegalisationID != l.ID:
			return false, []model.FieldError{{Field: "legal_key", Reason: fmt.Sprintf("names legalisation %q but legalisation_id is %q", l.ID, in.LegalisationID)}}
		}
		in.LegalisationID = l.ID
	}
	if !w.history {
		const needs = "importing historical evidence needs the import_history scope"
		if !in.CreatedAt.IsZero() {
			fes = append(fes, model.FieldError{Field: "created_at", Reason: "is set by the server (the instant the evidence is created); " + needs})
		}
		if in.RenewedAt != nil {
			fes = append(fes, model.FieldError{Field: "renewed_at", Reason: "is set by a renewal (POST /v1/evidence/{entity}/{id}/{evidence_id}/renew); " + needs})
		}
		if in.CreatedBy != "" && in.CreatedBy != w.actor {
			fes = append(fes, model.FieldError{Field: "created_by", Reason: "is set by the server (the token's name); " + needs})
		}
		if in.SubjectOrigin != nil {
			// Dating the subject's data back moves every lifecycle instant
			// it counts from, and so can make it due for deletion at once.
			fes = append(fes, model.FieldError{Field: "subject_origin", Reason: "dates the subject's data (its lifecycle, and so when it is forgotten); " + needs})
		}
		if fes != nil {
			return false, fes
		}
	}
	historical = !in.CreatedAt.IsZero()
	if historical && in.CreatedAt.After(w.now) {
		return false, []model.FieldError{{Field: "created_at", Reason: "is in the future"}}
	}
	if in.RenewedAt != nil && in.RenewedAt.After(w.now) {
		return false, []model.FieldError{{Field: "renewed_at", Reason: "is in the future"}}
	}
	if !historical {
		in.CreatedAt = w.now.UTC()
	}
	if in.CreatedBy == "" {
		in.CreatedBy = w.actor
	}
	if err := ix.ValidateEvidence(&in.Evidence); err != nil {
		var ve *model.ValidationError
		if errors.As(err, &ve) {
			return false, ve.Errors
		}
		return false, []model.FieldError{{Field: "", Reason: err.Error()}}
	}
	return historical, nil
}

func (s *Server) handleEvidenceCreate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var in evidenceInput
	if err := decodeBody(w, r, s.o.MaxBodyBytes, &in); err != nil {
		return
	}
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	now := s.o.Clock()
	historical, fes := resolveEvidence(ix, &in, evidenceWrite{actor: actor(ctx), now: now, history: hasScope(ctx, ScopeImportHistory)})
	if fes != nil {
		writeValidation(w, fes)
		return
	}
	entry := audit.Entry{
		Time: now.UTC(), Actor: actor(ctx), Action: "evidence.create",
		Object: "legalisations/" + in.LegalisationID, Subject: s.o.Hasher.Subject(in.Subject),
	}
	if historical || in.SubjectOrigin != nil {
		entry.Action = "evidence.import_history"
		entry.Detail = map[string]string{}
		if historical {
			entry.Detail["created_at"] = in.CreatedAt.UTC().Format(time.RFC3339)
		}
		if in.SubjectOrigin != nil {
			entry.Detail["subject_origin"] = in.SubjectOrigin.UTC().Format(time.RFC3339)
		}
	}
	stored, err := s.o.Store.PutEvidence(ctx, []model.Evidence{in.Evidence}, entry)
	if err != nil {
		s.storeFailed(w, r, "store evidence", err)
		return
	}
	ev := stored[0]
	w.Header().Set("Location", "/v1/evidence?entity="+url.QueryEscape(ev.Subject.Entity)+"&id="+url.QueryEscape(ev.Subject.ID))
	writeJSON(w, http.StatusCreated, ev)
}

func (s *Server) handleEvidenceList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ref := model.SubjectRef{Entity: q.Get("entity"), ID: q.Get("id")}
	if ref.Entity == "" || ref.ID == "" {
		writeValidation(w, []model.FieldError{{Field: "entity,id", Reason: "both query parameters are required"}})
		return
	}
	rec, err := s.o.Store.Subject(r.Context(), ref)
	if err != nil {
		s.storeFailed(w, r, "read subject", err)
		return
	}
	evs := rec.Evidence
	if evs == nil {
		evs = []model.Evidence{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"subject": ref, "evidence": evs})
}

func (s *Server) handleEvidenceRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ref := model.SubjectRef{Entity: r.PathValue("entity"), ID: r.PathValue("id")}
	id := r.PathValue("evidence_id")
	now := s.o.Clock().UTC()
	// Evidence that stops covering can make data (the subject's, its
	// children's) due for deletion at once: previewed on ?dry_run=true,
	// the deletions it causes are in the audit entry.
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	pv, err := s.o.Forget.PreviewRevoke(ctx, ix, ref, id, now)
	if errors.Is(err, cache.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "the subject has no evidence with id "+strconv.Quote(id))
		return
	}
	if err != nil {
		s.storeFailed(w, r, "preview the revocation", err)
		return
	}
	if r.URL.Query().Get("dry_run") == "true" {
		writeJSON(w, http.StatusOK, map[string]any{"dry_run": true, "revoke": id, "preview": pv, "deletions": deletionMode(s.o.Forget)})
		return
	}
	entry := audit.Entry{
		Time: now, Actor: actor(ctx), Action: "evidence.revoke",
		Object: "evidence/" + id, Subject: s.o.Hasher.Subject(ref),
	}
	if pv.Deletions.Total+pv.Deletions.NotExecutable > 0 {
		entry.Detail = map[string]string{"deletions": strconv.Itoa(pv.Deletions.Total), "not_executable": strconv.Itoa(pv.Deletions.NotExecutable)}
	}
	if err := s.o.Store.RevokeEvidence(ctx, ref, id, entry); err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			writeError(w, http.StatusNotFound, "not_found", "the subject has no evidence with id "+strconv.Quote(id))
			return
		}
		s.storeFailed(w, r, "revoke evidence", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"revoked": id})
}

// importResult is one record's outcome in an import.
type importResult struct {
	Index  int                `json:"index"`
	Status string             `json:"status"` // ok, error, not_stored
	ID     string             `json:"id,omitempty"`
	Errors []model.FieldError `json:"errors,omitempty"`
}

type importSummary struct {
	Atomic   bool   `json:"atomic"`
	Total    int    `json:"total"`
	Stored   int    `json:"stored"`
	Failed   int    `json:"failed"`
	Error    string `json:"error,omitempty"`
	Message  string `json:"message,omitempty"`
	Complete bool   `json:"complete"`
}

// handleImport streams an NDJSON or JSON-array body of evidence records.
// Each record is decoded and validated on its own; the body is never held
// whole in memory. Without ?atomic=true valid records are stored in batches
// of ImportBatch and invalid ones reported; with it, everything is stored in
// one atomic PutEvidence or nothing is. Re-importing the same
// (legalisation, evidence_key) replaces the record (idempotent).
//
// The answer is 200 (every record stored), 207 (some refused, the rest
// stored), 422 (atomic, nothing stored), 400 (body not parseable past some
// record), 413 (more than MaxImport records or MaxImportBytes bytes; same
// rule; GET /v1/evidence:import tells the limits). In a non-atomic import,
// valid records read before a fatal error are stored. A record with neither
// an id nor an evidence_key gets an id from its content (contentID), so
// importing the same file twice stores nothing twice. The body is {"summary":{…},"results":[…]} or, with Accept:
// application/x-ndjson, one result per line followed by a summary line.
func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	atomic := r.URL.Query().Get("atomic") == "true"
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	body := http.MaxBytesReader(w, r.Body, s.o.MaxImportBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()

	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isArray := false
	switch ct {
	case "application/x-ndjson", "application/jsonl", "application/json-seq":
	case "application/json", "":
		isArray = true
	default:
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/x-ndjson (one record per line) or application/json (an array)")
		return
	}

	imp := &importer{s: s, ctx: ctx, atomic: atomic, actor: actor(ctx)}
	// One clock reading for the whole import: its records were all created
	// at the instant it was accepted.
	imp.write = evidenceWrite{actor: imp.actor, now: s.o.Clock(), history: hasScope(ctx, ScopeImportHistory)}
	status, code, msg := http.StatusOK, "", ""
	if isArray {
		tok, err := dec.Token()
		if err != nil || tok != json.Delim('[') {
			if err == nil {
				err = errors.New("a JSON array of records is expected")
			}
			answerDecodeError(w, err, s.o.MaxImportBytes)
			return
		}
	}
	for {
		if isArray && !dec.More() {
			if _, err := dec.Token(); err != nil {
				status, code, msg = decodeFailure(err, s.o.MaxImportBytes)
			} else if _, err := dec.Token(); err != io.EOF {
				status, code, msg = http.StatusBadRequest, "malformed_json", "unexpected data after the array"
			}
			break
		}
		if len(imp.results) >= s.o.MaxImport {
			if _, err := dec.Token(); err == io.EOF && !isArray {
				break
			}
			status, code = http.StatusRequestEntityTooLarge, "too_many_records"
			msg = fmt.Sprintf("an import holds at most %d records; records after that were not read", s.o.MaxImport)
			break
		}
		var in evidenceInput
		err := dec.Decode(&in)
		if err == io.EOF && !isArray {
			break
		}
		if err != nil && isFatalDecode(err) {
			status, code, msg = decodeFailure(err, s.o.MaxImportBytes)
			msg = fmt.Sprintf("record %d: %s", len(imp.results), msg)
			break
		}
		i := len(imp.results)
		imp.results = append(imp.results, importResult{Index: i})
		if err != nil {
			// Unknown field or wrong type: the record was consumed whole, the
			// stream goes on.
			imp.fail(i, []model.FieldError{{Field: decodeField(err), Reason: strings.TrimPrefix(err.Error(), "json: ")}})
			continue
		}
		historical, fes := resolveEvidence(ix, &in, imp.write)
		if fes != nil {
			imp.fail(i, fes)
			continue
		}
		if in.ID == "" && in.EvidenceKey == "" {
			in.ID = contentID(&in.Evidence, historical)
		}
		imp.pending = append(imp.pending, in.Evidence)
		imp.pendingIdx = append(imp.pendingIdx, i)
		if historical || in.SubjectOrigin != nil {
			imp.pendingHistory++
		}
		if !atomic && len(imp.pending) >= s.o.ImportBatch {
			imp.flush()
		}
	}
	if !atomic || (code == "" && imp.failed == 0) {
		imp.flush()
	}
	if atomic && imp.storeErr != nil {
		// One atomic PutEvidence failed: nothing was stored.
		s.storeFailed(w, r, "store evidence", imp.storeErr)
		return
	}
	sum := importSummary{Atomic: atomic, Total: len(imp.results), Stored: imp.stored, Failed: imp.failed, Error: code, Message: msg, Complete: code == ""}
	if atomic && (imp.failed > 0 || code != "") {
		for i := range imp.results {
			if imp.results[i].Status == "ok" || imp.results[i].Status == "" {
				imp.results[i].Status, imp.results[i].ID = "not_stored", ""
			}
		}
		if code == "" {
			status, sum.Error = http.StatusUnprocessableEntity, "validation_failed"
			sum.Message = fmt.Sprintf("%d of %d records are invalid; nothing was stored (atomic import)", imp.failed, len(imp.results))
		}
	} else if code == "" && imp.failed > 0 {
		status = http.StatusMultiStatus
	}
	s.log.InfoContext(ctx, "evidence import", "actor", imp.actor, "atomic", atomic, "total", sum.Total, "stored", sum.Stored, "failed", sum.Failed, "error", code)
	if wantsNDJSON(r) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		for _, res := range imp.results {
			_ = enc.Encode(res)
		}
		_ = enc.Encode(map[string]any{"summary": sum})
		return
	}
	// Compact, not indented: an import answer can hold 100k results.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"summary": sum, "results": imp.results})
}

// contentID names an evidence record that came with neither an id nor an
// evidence_key by its content, so that importing the same file twice stores
// each record once (a record whose id exists in its subject is replaced).
// What varies between two imports of the same line — the importing actor,
// the time of import when created_at is not given — is left out; the
// legalisation counts by id, whether the line named it by id or legal_key.
// A plain hash is enough: the id is stored beside the subject's id and the
// rest of the record, which it therefore cannot disclose.
func contentID(ev *model.Evidence, historical bool) string {
	h := sha256.New()
	field := func(s string) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	when := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	field(ev.Subject.Entity)
	field(ev.Subject.ID)
	field(ev.LegalisationID)
	field(ev.Reference)
	field(strconv.Itoa(len(ev.CommIDs)))
	for _, c := range ev.CommIDs {
		field(c)
	}
	field(ev.ContactID)
	field(ev.ProjectID)
	field(when(ev.Origin))
	if ev.RenewedAt != nil {
		field(when(*ev.RenewedAt))
	} else {
		field("-")
	}
	if historical {
		field(when(ev.CreatedAt))
	} else {
		field("") // the server's instant of import
	}
	return "ev-c" + hex.EncodeToString(h.Sum(nil)[:12])
}

// importLimits is the answer of GET /v1/evidence:import.
type importLimits struct {
	MaxRecords int   `json:"max_records"`
	MaxBytes   int64 `json:"max_bytes"`
	Batch      int   `json:"batch"`
}

func (s *Server) handleImportLimits(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, importLimits{MaxRecords: s.o.MaxImport, MaxBytes: s.o.MaxImportBytes, Batch: s.o.ImportBatch})
}

// importer accumulates valid records and stores them in batches.
type importer struct {
	s          *Server
	ctx        context.Context
	atomic     bool
	actor      string
	write      evidenceWrite
	results    []importResult
	pending    []model.Evidence
	pendingIdx []int
	// pendingHistory counts pending records that carry their own created_at
	// or their subject's origin.
	pendingHistory int
	stored         int
	failed         int
	batches        int
	storeErr       error
}

func (imp *importer) fail(i int, fes []model.FieldError) {
	imp.results[i].Status, imp.results[i].Errors = "error", fes
	imp.failed++
}

// flush stores the pending records with one PutEvidence (one atomic batch,
// one audit entry). A store failure marks the batch's records as errors.
func (imp *importer) flush() {
	if len(imp.pending) == 0 {
		return
	}
	imp.batches++
	entry := audit.Entry{
		Time: imp.s.o.Clock().UTC(), Actor: imp.actor, Action: "evidence.import", Object: "evidence",
		Detail: map[string]string{"records": strconv.Itoa(len(imp.pending)), "batch": strconv.Itoa(imp.batches), "atomic": strconv.FormatBool(imp.atomic)},
	}
	if imp.pendingHistory > 0 {
		// Historical records are the import_history permission at work:
		// their batch is audited under its own action.
		entry.Action = "evidence.import_history"
		entry.Detail["historical"] = strconv.Itoa(imp.pendingHistory)
	}
	stored, err := imp.s.o.Store.PutEvidence(imp.ctx, imp.pending, entry)
	if err != nil {
		imp.storeErr = err
		for _, i := range imp.pendingIdx {
			imp.fail(i, []model.FieldError{{Field: "", Reason: "not stored: " + err.Error()}})
		}
	} else {
		for k, i := range imp.pendingIdx {
			imp.results[i].Status = "ok"
			if k < len(stored) {
				imp.results[i].ID = stored[k].ID
			}
		}
		imp.stored += len(stored)
	}
	imp.pending, imp.pendingIdx, imp.pendingHistory = imp.pending[:0], imp.pendingIdx[:0], 0
}

// isFatalDecode reports whether the stream cannot be read further (syntax
// error, truncated body, size limit), as opposed to one record not fitting
// the schema.
func isFatalDecode(err error) bool {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) || strings.HasPrefix(err.Error(), "json: unknown field") {
		return false
	}
	return true
}

func decodeFailure(err error, limit int64) (int, string, string) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the import body exceeds %d bytes", limit)
	}
	return http.StatusBadRequest, "malformed_json", err.Error()
}

func decodeField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return strings.Trim(f, `"`)
	}
	return ""
}

func wantsNDJSON(r *http.Request) bool {
	return r.URL.Query().Get("format") == "ndjson" || strings.Contains(r.Header.Get("Accept"), "application/x-ndjson")
}

// subjectInput is the body of PUT /v1/subjects/{entity}/{id}; the subject is
// the path's.
type subjectInput struct {
	Origin time.Time         `json:"origin"`
	Parent *model.SubjectRef `json:"parent,omitempty"`
}

func (s *Server) handleSubjectPut(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ref := model.SubjectRef{Entity: r.PathValue("entity"), ID: r.PathValue("id")}
	var in subjectInput
	if err := decodeBody(w, r, s.o.MaxBodyBytes, &in); err != nil {
		return
	}
	var fes []model.FieldError
	if in.Origin.IsZero() {
		fes = append(fes, model.FieldError{Field: "origin", Reason: "is required"})
	}
	if in.Parent != nil && (in.Parent.Entity == "" || in.Parent.ID == "") {
		fes = append(fes, model.FieldError{Field: "parent", Reason: "needs entity and id"})
	}
	if in.Parent != nil && *in.Parent == ref {
		fes = append(fes, model.FieldError{Field: "parent", Reason: "a subject cannot be its own parent"})
	}
	now := s.o.Clock().UTC()
	if in.Origin.After(now) {
		fes = append(fes, model.FieldError{Field: "origin", Reason: "is in the future"})
	}
	if fes != nil {
		writeValidation(w, fes)
		return
	}
	sub := model.Subject{Ref: ref, Origin: in.Origin.UTC(), Parent: in.Parent}
	// An origin dated back (or a parent whose evidence stops covering) can
	// make the subject's data due for deletion at once: the change is
	// previewed on ?dry_run=true, and its deletions are in the audit entry.
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	pv, err := s.o.Forget.PreviewSubject(ctx, ix, sub, now)
	if err != nil {
		s.storeFailed(w, r, "preview the change", err)
		return
	}
	if r.URL.Query().Get("dry_run") == "true" {
		writeJSON(w, http.StatusOK, map[string]any{"dry_run": true, "subject": sub, "preview": pv, "deletions": deletionMode(s.o.Forget)})
		return
	}
	entry := audit.Entry{
		Time: now, Actor: actor(ctx), Action: "subject.put",
		Object: "subjects", Subject: s.o.Hasher.Subject(ref),
		Detail: map[string]string{"origin": sub.Origin.Format(time.RFC3339)},
	}
	if in.Parent != nil {
		entry.Detail["parent"] = s.o.Hasher.Subject(*in.Parent)
	}
	if pv.Deletions.Total+pv.Deletions.NotExecutable > 0 {
		entry.Detail["deletions"] = strconv.Itoa(pv.Deletions.Total)
		entry.Detail["not_executable"] = strconv.Itoa(pv.Deletions.NotExecutable)
	}
	if err := s.o.Store.PutSubject(ctx, sub, entry); err != nil {
		s.storeFailed(w, r, "store subject", err)
		return
	}
	writeJSON(w, http.StatusOK, sub)
}

// bitView is one sensitivity bit's state in a subject's computed state.
type bitView struct {
	Bit         int    `json:"bit"`
	Sensitivity string `json:"sensitivity"`
	State       string `json:"state"`
	Covered     bool   `json:"covered"`
	// Coverage is the bit's colour: evidence in force now on the subject
	// (blue), inherited (green), or none (red).
	Coverage string `json:"coverage"`
	// Since is when the bit entered its current state (null: since the
	// timeline's start).
	Since *time.Time `json:"since"`
	// NextTransition is the bit's next change of state (null: none).
	NextTransition *bitTransition `json:"next_transition"`
	// Transitions are the bit's changes of state from the subject's data
	// origin on (see TimelineFrom), past and future, with today's
	// registers and evidence.
	Transitions []bitTransition `json:"transitions"`
	// Evidence are the records whose legalisation covers the bit.
	Evidence []bitEvidence `json:"evidence"`
}

type grantView struct {
	LegalisationID    string `json:"legalisation_id"`
	PrivacyPermission uint32 `json:"privacy_permission"`
	Coverage          uint32 `json:"coverage"`
	Inherited         bool   `json:"inherited"`
}

type subjectView struct {
	Subject        model.SubjectRef  `json:"subject"`
	Known          bool              `json:"known"`
	Origin         *time.Time        `json:"origin"`
	Parent         *model.SubjectRef `json:"parent,omitempty"`
	Restricted     bool              `json:"restricted"`
	Restriction    string            `json:"restriction,omitempty"`
	Coverage       string            `json:"coverage"`
	Bits           []bitView         `json:"bits"`
	NextTransition *time.Time        `json:"next_transition"`
	Grants         []grantView       `json:"grants"`
	Evidence       []model.Evidence  `json:"evidence"`
	Inherited      []model.Evidence  `json:"inherited_evidence,omitempty"`
	// IdleEvidence are the records (own or inherited) that cover no bit,
	// each with the reason.
	IdleEvidence []idleEvidence `json:"idle_evidence,omitempty"`
	// TimelineFrom is where the bits' transitions start: the data origin
	// (now for a subject the store does not know).
	TimelineFrom time.Time `json:"timeline_from"`
	// LifecycleFrozen: gdpr_enforced is off, nothing is archived, expired
	// or obliviated any more (the timeline has no future transitions).
	LifecycleFrozen  bool      `json:"lifecycle_frozen,omitempty"`
	RegistersVersion int64     `json:"registers_version"`
	Stale            bool      `json:"stale,omitempty"`
	At               time.Time `json:"at"`
}

// handleSubjectGet shows a subject's computed state at now. A subject the
// store does not know is evaluated as if first seen now but not recorded:
// looking at a subject must not create it.
func (s *Server) handleSubjectGet(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ref := model.SubjectRef{Entity: r.PathValue("entity"), ID: r.PathValue("id")}
	now := s.o.Clock()
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	rec, err := s.o.Store.Subject(ctx, ref)
	if err != nil {
		s.storeFailed(w, r, "read subject", err)
		return
	}
	v := subjectView{
		Subject: ref, Known: rec.Known, Restriction: rec.Restriction, Restricted: rec.Restriction != "",
		Evidence: rec.Evidence, RegistersVersion: ix.Version, At: now.UTC(), Grants: []grantView{},
	}
	if v.Evidence == nil {
		v.Evidence = []model.Evidence{}
	}
	var st lifecycle.State
	var inherited []model.Evidence
	src, from := cache.OriginNone, now
	if rec.Known {
		f, err := s.o.Store.Facts(ctx, ref, now)
		if err != nil {
			s.storeFailed(w, r, "compute subject state", err)
			return
		}
		st, v.Stale, v.RegistersVersion = f.State, f.Stale, f.RegistersVersion
		v.Restricted = v.Restricted || f.Restricted
		origin := rec.Subject.Origin
		v.Origin, v.Parent = &origin, rec.Subject.Parent
		if p := rec.Subject.Parent; p != nil {
			if prec, err := s.o.Store.Subject(ctx, *p); err == nil {
				v.Inherited = prec.Evidence
				inherited = prec.Evidence
			}
		}
		if src = f.Origin; !origin.IsZero() {
			from = origin
		}
	} else {
		st = cache.ComputeFacts(ix, cache.SubjectRecord{Subject: model.Subject{Ref: ref}}, cache.OriginNone, nil, now).State
	}
	v.Coverage = st.Coverage.String()
	if !st.Next.IsZero() {
		n := st.Next.UTC()
		v.NextTransition = &n
	}
	v.TimelineFrom = from.UTC()
	v.LifecycleFrozen = ix.Registers != nil && !ix.Registers.Config.GdprEnforced
	// A subject without an origin is evaluated as if first seen now: the
	// walk must hold that instant still, not move it with each step.
	walk := rec
	walk.Subject.Origin = from
	trs := timeline(ix, walk, src, inherited, from)
	behind, idle := evidenceBehind(ix, from, rec.Evidence, inherited, now)
	v.IdleEvidence = idle
	for b := 0; b <= model.MaxBit; b++ {
		sens := ix.ByBit[b]
		if sens == nil {
			continue
		}
		bv := bitView{Bit: b, Sensitivity: sens.ID, State: st.Bit(b).String(), Covered: st.Covered&sens.Mask() != 0, Coverage: st.BitCoverage(b).String(),
			Transitions: trs[b], Evidence: behind[b]}
		if bv.Transitions == nil {
			bv.Transitions = []bitTransition{}
		}
		if bv.Evidence == nil {
			bv.Evidence = []bitEvidence{}
		}
		for i, tr := range bv.Transitions {
			if tr.At.After(now) {
				bv.NextTransition = &bv.Transitions[i]
				break
			}
			at := tr.At
			bv.Since = &at
		}
		v.Bits = append(v.Bits, bv)
	}
	for _, g := range st.Grants {
		v.Grants = append(v.Grants, grantView{LegalisationID: g.LegalisationID, PrivacyPermission: g.PrivacyPermission, Coverage: g.Coverage, Inherited: g.Inherited})
	}
	writeJSON(w, http.StatusOK, v)
}
