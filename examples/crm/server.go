// Package crm is the legacy CRM of the reference scenario (README.md in this
// directory): a plain net/http JSON API over an in-memory, deterministic
// data set, with no GDPR logic at all. gdprgate's demo and end-to-end tests
// run it in-process behind the gate; cmd/crm serves it on its own.
//
// Besides the HTTP API the Server exposes test hooks: counters of what the
// DELETE routes (used by wipes) really removed, a fault injector that makes
// the next requests fail with 503 (to prove wipes retry), and read-only
// views of the data set.
package crm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Paging limits of GET /api/contacts.
const (
	DefaultPerPage = 50
	MaxPerPage     = 500
	maxBodyBytes   = 1 << 20
)

// Route keys of the counters returned by Deleted and DeleteCalls.
const (
	RouteDeleteContact = "DELETE /api/contacts/{id}"
	RouteDeleteCalls   = "DELETE /api/contacts/{id}/calls"
	RouteDeleteIssues  = "DELETE /api/issues"
)

// Outbound is one accepted outbound communication request.
type Outbound struct {
	ID        string `json:"id"`
	Channel   string `json:"channel"` // "call" or "email"
	ContactID string `json:"contact_id"`
	Type      string `json:"type"`
}

type fault struct {
	method, prefix string
	n              int
}

// Server is the CRM: an http.Handler over the in-memory data set. It is safe
// for concurrent use.
type Server struct {
	mux *http.ServeMux

	mu          sync.Mutex
	contacts    map[string]*Contact
	order       []string // list order of contacts
	calls       []Call
	issues      []Issue
	outbound    []Outbound
	faults      []*fault
	deleted     map[string]int
	deleteCalls map[string]int
	patches     int
	requests    []string
	nextCall    int

	// foldIDs and formatSuffix make record lookups lenient, like many
	// real backends (see CaseInsensitiveIDs, FormatSuffix).
	foldIDs, formatSuffix bool
}

// An Option changes how the CRM behaves.
type Option func(*Server)

// CaseInsensitiveIDs makes the CRM find a contact under any letter case of
// its id, as a database with a case-insensitive collation (MySQL's default,
// SQL Server's) does: GET /api/contacts/C-2 answers contact c-2. The answer
// carries the stored id.
func CaseInsensitiveIDs() Option { return func(s *Server) { s.foldIDs = true } }

// FormatSuffix makes the CRM read a ".json" suffix of an id as the answer's
// format, as Rails routes do: GET /api/contacts/c-2.json answers contact
// c-2.
func FormatSuffix() Option { return func(s *Server) { s.formatSuffix = true } }

// New returns a CRM whose data set's times are relative to now (c-1 was
// created at now-100d, …; see ContactAges). Formatting drops sub-second
// precision, so pass a now truncated to the second when comparing times
// exactly with a seed loaded for the same now.
func New(now time.Time, opts ...Option) *Server {
	contacts, calls, issues := seedData(now)
	s := &Server{
		mux:         http.NewServeMux(),
		contacts:    make(map[string]*Contact, len(contacts)),
		calls:       calls,
		issues:      issues,
		deleted:     map[string]int{},
		deleteCalls: map[string]int{},
	}
	for _, o := range opts {
		o(s)
	}
	for i := range contacts {
		c := contacts[i]
		s.contacts[c.ID] = &c
		s.order = append(s.order, c.ID)
	}
	s.mux.HandleFunc("GET /api/contacts", s.listContacts)
	s.mux.HandleFunc("GET /api/contacts/{id}", s.getContact)
	s.mux.HandleFunc("PUT /api/contacts/{id}", s.putContact)
	s.mux.HandleFunc("PATCH /api/contacts/{id}", s.patchContact)
	s.mux.HandleFunc("DELETE /api/contacts/{id}", s.deleteContact)
	s.mux.HandleFunc("GET /api/contacts/{id}/calls", s.getCalls)
	s.mux.HandleFunc("DELETE /api/contacts/{id}/calls", s.deleteCallsOf)
	s.mux.HandleFunc("GET /api/contacts/{id}/export", s.export)
	s.mux.HandleFunc("GET /api/issues/{id}", s.getIssue)
	s.mux.HandleFunc("DELETE /api/issues", s.deleteIssues)
	s.mux.HandleFunc("POST /api/calls", s.logCall)
	s.mux.HandleFunc("POST /api/outbound/calls", s.outboundHandler("call", "campaign", "adhoc", "callback"))
	s.mux.HandleFunc("POST /api/outbound/emails", s.outboundHandler("email", "campaign", "adhoc"))
	// JSON 404 for unknown paths; per method so that a known path with the
	// wrong method still gets ServeMux's 405.
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		s.mux.HandleFunc(m+" /", func(w http.ResponseWriter, _ *http.Request) { notFound(w) })
	}
	return s
}

// ServeHTTP logs the request, applies injected faults and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.takeFault(r) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "unavailable (injected fault)"})
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) takeFault(r *http.Request) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) < 10000 {
		s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	}
	for i, f := range s.faults {
		if (f.method == "" || f.method == r.Method) && strings.HasPrefix(r.URL.Path, f.prefix) {
			f.n--
			if f.n <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			return true
		}
	}
	return false
}

// FailNext makes the next n requests whose method is method ("" = any) and
// whose path starts with pathPrefix answer 503 without touching the data,
// so that callers' retries can be tested. Calls accumulate; the earliest
// registered matching fault is used first.
func (s *Server) FailNext(method, pathPrefix string, n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{method: method, prefix: pathPrefix, n: n})
}

// Deleted reports, per DELETE route (the Route* keys), how many calls
// actually removed something. A wipe executed exactly once in effect leaves
// 1 per route for its subject however often it was retried.
func (s *Server) Deleted() map[string]int { return s.snapshot(s.deleted) }

// DeleteCalls reports, per DELETE route, how many calls reached the handler
// (including those that found nothing left to delete, excluding injected
// faults).
func (s *Server) DeleteCalls() map[string]int { return s.snapshot(s.deleteCalls) }

func (s *Server) snapshot(m map[string]int) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Requests lists "METHOD /path?query" of every request received, injected
// faults included, in arrival order (capped at 10000).
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// Contact returns a copy of a contact, or false when it does not exist.
func (s *Server) Contact(id string) (Contact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.contacts[id]
	if !ok {
		return Contact{}, false
	}
	return cloneContact(c), true
}

// Calls returns the calls of a contact (whether or not the contact exists).
func (s *Server) Calls(contactID string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callsOf(contactID)
}

// Issues returns the issues of a contact (whether or not the contact exists).
func (s *Server) Issues(contactID string) []Issue {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issuesOf(contactID)
}

// Outbound lists the outbound communications accepted so far.
func (s *Server) Outbound() []Outbound {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Outbound(nil), s.outbound...)
}

func (s *Server) callsOf(id string) []Call {
	out := []Call{}
	for _, c := range s.calls {
		if c.ContactID == id {
			out = append(out, c)
		}
	}
	return out
}

func (s *Server) issuesOf(id string) []Issue {
	out := []Issue{}
	for _, is := range s.issues {
		if is.ContactID == id {
			out = append(out, is)
		}
	}
	return out
}

func cloneContact(c *Contact) Contact {
	out := *c
	out.Tags = append([]string{}, c.Tags...)
	return out
}

func (s *Server) listContacts(w http.ResponseWriter, r *http.Request) {
	page, err := intParam(r, "page", 1)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	perPage, err := intParam(r, "per_page", DefaultPerPage)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	perPage = min(perPage, MaxPerPage)
	s.mu.Lock()
	defer s.mu.Unlock()
	data := []Contact{}
	// Guard the multiplication: a huge page number must not overflow.
	if page <= len(s.order)/perPage+1 {
		start := (page - 1) * perPage
		for _, id := range s.order[min(start, len(s.order)):min(start+perPage, len(s.order))] {
			data = append(data, cloneContact(s.contacts[id]))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "page": page, "per_page": perPage, "total": len(s.order)})
}

func intParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s must be a positive integer", name)
	}
	return n, nil
}

func (s *Server) getContact(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, c, ok := s.find(r.PathValue("id"))
	if !ok {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, cloneContact(c))
}

// find looks a contact up by the id a request gives, and returns its
// stored id. Exact unless an Option makes it lenient. The caller holds mu.
func (s *Server) find(id string) (string, *Contact, bool) {
	if c, ok := s.contacts[id]; ok {
		return id, c, true
	}
	if s.formatSuffix {
		if base, ok := strings.CutSuffix(id, ".json"); ok {
			if c, ok := s.contacts[base]; ok {
				return base, c, true
			}
			id = base
		}
	}
	if s.foldIDs {
		for _, stored := range s.order {
			if strings.EqualFold(stored, id) {
				return stored, s.contacts[stored], true
			}
		}
	}
	return "", nil, false
}

func (s *Server) putContact(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, c, ok := s.find(r.PathValue("id"))
	if !ok {
		notFound(w)
		return
	}
	// Decode over a copy: fields absent from the body keep their values, and
	// a bad body changes nothing.
	upd := cloneContact(c)
	if err := decodeBody(w, r, &upd); err != nil {
		badRequest(w, err.Error())
		return
	}
	if upd.ID != id {
		badRequest(w, "id cannot be changed")
		return
	}
	if upd.CreatedAt != c.CreatedAt {
		badRequest(w, "created_at cannot be changed")
		return
	}
	*c = upd
	writeJSON(w, http.StatusOK, cloneContact(c))
}

// patchContact applies a JSON merge patch (RFC 7396): members present
// replace the field, null clears it (what gdprgate's erasure steps send).
func (s *Server) patchContact(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, c, ok := s.find(r.PathValue("id"))
	if !ok {
		notFound(w)
		return
	}
	var patch map[string]json.RawMessage
	if err := decodeBody(w, r, &patch); err != nil {
		badRequest(w, err.Error())
		return
	}
	cur, _ := json.Marshal(cloneContact(c))
	var doc map[string]json.RawMessage
	_ = json.Unmarshal(cur, &doc)
	for k, v := range patch {
		if _, known := doc[k]; !known {
			badRequest(w, "unknown field "+k)
			return
		}
		if string(v) == "null" {
			delete(doc, k)
		} else {
			doc[k] = v
		}
	}
	merged, _ := json.Marshal(doc)
	var upd Contact
	if err := json.Unmarshal(merged, &upd); err != nil {
		badRequest(w, err.Error())
		return
	}
	if upd.ID != id || upd.CreatedAt != c.CreatedAt {
		badRequest(w, "id and created_at cannot be changed")
		return
	}
	s.patches++
	*c = upd
	writeJSON(w, http.StatusOK, cloneContact(c))
}

// AddContact adds (or replaces) a contact, appended to the list order: a
// contact gdprgate's seed does not know (tests of first meetings).
func (s *Server) AddContact(c Contact) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.contacts[c.ID]; !ok {
		s.order = append(s.order, c.ID)
	}
	cc := cloneContact(&c)
	s.contacts[c.ID] = &cc
}

// Patches counts the PATCH calls that changed a contact.
func (s *Server) Patches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.patches
}

func (s *Server) deleteContact(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteCalls[RouteDeleteContact]++
	if _, ok := s.contacts[id]; ok {
		delete(s.contacts, id)
		for i, o := range s.order {
			if o == id {
				s.order = append(s.order[:i], s.order[i+1:]...)
				break
			}
		}
		s.deleted[RouteDeleteContact]++
	}
	// Idempotent: a wipe retrying after a lost response must succeed.
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getCalls(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, _, ok := s.find(r.PathValue("id"))
	if !ok {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": s.callsOf(id)})
}

func (s *Server) deleteCallsOf(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteCalls[RouteDeleteCalls]++
	var removed bool
	if s.calls, removed = without(s.calls, func(c Call) bool { return c.ContactID == id }); removed {
		s.deleted[RouteDeleteCalls]++
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteIssues(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("contact_id")
	if id == "" {
		// Deleting every issue by accident would be far worse than a 400.
		badRequest(w, "contact_id query parameter is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteCalls[RouteDeleteIssues]++
	var removed bool
	if s.issues, removed = without(s.issues, func(is Issue) bool { return is.ContactID == id }); removed {
		s.deleted[RouteDeleteIssues]++
	}
	w.WriteHeader(http.StatusNoContent)
}

// without returns a new slice of the items drop rejects, and whether any
// were dropped. The original slice is left as it is.
func without[T any](items []T, drop func(T) bool) ([]T, bool) {
	kept := items[:0:0]
	for _, it := range items {
		if !drop(it) {
			kept = append(kept, it)
		}
	}
	return kept, len(kept) != len(items)
}

func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, c, ok := s.find(r.PathValue("id"))
	if !ok {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"contact": cloneContact(c),
		"calls":   s.callsOf(id),
		"issues":  s.issuesOf(id),
	})
}

func (s *Server) getIssue(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, is := range s.issues {
		if is.ID == id {
			writeJSON(w, http.StatusOK, is)
			return
		}
	}
	notFound(w)
}

// logCall records a call an agent handled (the contact centre's call
// record): 201 with the new call, whose id the CRM chooses.
func (s *Server) logCall(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ContactID string `json:"contact_id"`
		Direction string `json:"direction"`
		Phone     string `json:"phone"`
		Topic     string `json:"topic"`
		DurationS int    `json:"duration_s"`
		Notes     string `json:"notes"`
		IsRenewal bool   `json:"is_renewal"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		badRequest(w, err.Error())
		return
	}
	if req.ContactID == "" || req.Direction != "inbound" && req.Direction != "outbound" {
		badRequest(w, "contact_id and direction (inbound or outbound) are required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.contacts[req.ContactID]
	if !ok {
		notFound(w)
		return
	}
	if req.Phone == "" {
		req.Phone = c.Phone
	}
	s.nextCall++
	call := Call{
		ID: fmt.Sprintf("call-n%d", s.nextCall), ContactID: req.ContactID, Direction: req.Direction, Phone: req.Phone,
		StartedAt: time.Now().UTC().Format(time.RFC3339), DurationS: req.DurationS, Notes: req.Notes,
		Topic: req.Topic, IsRenewal: req.IsRenewal,
	}
	s.calls = append(s.calls, call)
	writeJSON(w, http.StatusCreated, call)
}

func (s *Server) outboundHandler(channel string, types ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ContactID string `json:"contact_id"`
			Type      string `json:"type"`
		}
		if err := decodeBody(w, r, &req); err != nil {
			badRequest(w, err.Error())
			return
		}
		if req.ContactID == "" {
			badRequest(w, "contact_id is required")
			return
		}
		valid := false
		for _, t := range types {
			valid = valid || req.Type == t
		}
		if !valid {
			badRequest(w, fmt.Sprintf("type must be one of %s", strings.Join(types, ", ")))
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		id, _, ok := s.find(req.ContactID)
		if !ok {
			notFound(w)
			return
		}
		o := Outbound{ID: fmt.Sprintf("ob-%d", len(s.outbound)+1), Channel: channel, ContactID: id, Type: req.Type}
		s.outbound = append(s.outbound, o)
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "queued", "id": o.ID, "contact_id": o.ContactID, "type": o.Type})
	}
}

// decodeBody decodes exactly one JSON value, refusing unknown fields and
// bodies over 1 MiB.
func decodeBody(w http.ResponseWriter, r *http.Request, out any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	if dec.More() {
		return errors.New("invalid JSON body: trailing data")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}
