package adminapi

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// auditFilter selects audit entries: by actor, by action (exact, or a prefix
// ending in "." such as "wipe."), by subject (the keyed hash of entity/id,
// computed here: the trail never holds the id in clear) and by time.
type auditFilter struct {
	actor, action, subject string
	since, until           time.Time
}

// auditScanMax bounds the entries one filtered page reads; the answer's
// next cursor continues the scan.
const auditScanMax = 10000

// parseAuditFilter reads the filter's query parameters; a malformed one is
// answered 422 (ok false).
func (s *Server) parseAuditFilter(w http.ResponseWriter, r *http.Request) (f auditFilter, ok bool) {
	q := r.URL.Query()
	f.actor, f.action = q.Get("actor"), q.Get("action")
	var fes []model.FieldError
	entity, id, hash := q.Get("entity"), q.Get("id"), q.Get("subject")
	switch {
	case (entity == "") != (id == ""):
		fes = append(fes, model.FieldError{Field: "entity", Reason: "entity and id go together (the subject they name is matched by its hash)"})
	case entity != "" && hash != "":
		fes = append(fes, model.FieldError{Field: "subject", Reason: "give either subject (a hash) or entity and id, not both"})
	case entity != "":
		f.subject = s.o.Hasher.Subject(model.SubjectRef{Entity: entity, ID: id})
	default:
		f.subject = hash
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.since}, {"until", &f.until}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			fes = append(fes, model.FieldError{Field: p.name, Reason: fmt.Sprintf("must be an RFC 3339 time such as 2026-06-01T12:00:00Z (got %q)", v)})
			continue
		}
		*p.dst = t
	}
	if !f.since.IsZero() && !f.until.IsZero() && f.until.Before(f.since) {
		fes = append(fes, model.FieldError{Field: "until", Reason: "is before since"})
	}
	if fes != nil {
		writeValidation(w, fes)
		return f, false
	}
	return f, true
}

func (f auditFilter) any() bool {
	return f.actor != "" || f.action != "" || f.subject != "" || !f.since.IsZero() || !f.until.IsZero()
}

// auditSkew is how far out of time order entries of different sidecars may
// be appended (their clocks differ a little).
const auditSkew = time.Minute

// match reports whether e passes the filter; past is true when e is so far
// after until that no later entry can fall before it.
func (f auditFilter) match(e audit.Entry) (ok, past bool) {
	if !f.until.IsZero() && e.Time.After(f.until) {
		return false, e.Time.After(f.until.Add(auditSkew))
	}
	if !f.since.IsZero() && e.Time.Before(f.since) {
		return false, false
	}
	if f.actor != "" && e.Actor != f.actor {
		return false, false
	}
	if f.action != "" {
		if strings.HasSuffix(f.action, ".") {
			if !strings.HasPrefix(e.Action, f.action) {
				return false, false
			}
		} else if e.Action != f.action {
			return false, false
		}
	}
	if f.subject != "" && e.Subject != f.subject {
		return false, false
	}
	return true, false
}
