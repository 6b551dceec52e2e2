package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/forget"
	"github.com/gdprgate/gdprgate/policy/model"
)

type addFunc func(method, path, scope, summary, body string, h http.HandlerFunc)

// kind describes one register list so that the five CRUD handlers are
// written once for all six registers.
type kind[T any] struct {
	name    string // URL segment and JSON list name: "legalisations"
	schema  string // OpenAPI schema name: "Legalisation"
	keyName string // "id", or "name" for roles
	list    func(*model.Registers) *[]T
	key     func(*T) string
	setKey  func(*T, string)
	// usedBy names what still references the object (deletion refused).
	usedBy func(*model.Registers, *T) []string
	// view is what GET shows (default the object itself).
	view func(T, time.Time) any
	// decode reads a document (default: strictly into T, see parseDoc).
	decode func(data []byte, o shapeOpts) (T, *requestError)
}

func (s *Server) mountRegisters(add addFunc) {
	mountKind(s, add, kind[model.Sensitivity]{
		name: "sensitivities", schema: "Sensitivity", keyName: "id",
		list:   func(r *model.Registers) *[]model.Sensitivity { return &r.Sensitivities },
		key:    func(x *model.Sensitivity) string { return x.ID },
		setKey: func(x *model.Sensitivity, k string) { x.ID = k },
		usedBy: func(r *model.Registers, x *model.Sensitivity) []string {
			var used []string
			if x.Bit < 0 || x.Bit > model.MaxBit {
				return nil
			}
			m := x.Mask()
			for _, ru := range r.Rules {
				if ru.SensitivityID == x.ID {
					used = append(used, "rules/"+ru.ID)
				}
			}
			for _, l := range r.Legalisations {
				if l.Coverage&m != 0 {
					used = append(used, "legalisations/"+l.ID)
				}
			}
			for _, ro := range r.Roles {
				if ro.SensitivityMask&m != 0 {
					used = append(used, "roles/"+ro.Name)
				}
			}
			if (r.Config.DefaultSensitivity|r.Config.PhoneNumberSensitivity)&m != 0 {
				used = append(used, "config")
			}
			return used
		},
	})
	mountKind(s, add, kind[model.Category]{
		name: "categories", schema: "Category", keyName: "id",
		list:   func(r *model.Registers) *[]model.Category { return &r.Categories },
		key:    func(x *model.Category) string { return x.ID },
		setKey: func(x *model.Category, k string) { x.ID = k },
		usedBy: func(r *model.Registers, x *model.Category) []string {
			var used []string
			for _, l := range r.Legalisations {
				if l.CategoryID == x.ID {
					used = append(used, "legalisations/"+l.ID)
				}
			}
			return used
		},
	})
	mountKind(s, add, kind[model.Purpose]{
		name: "purposes", schema: "Purpose", keyName: "id",
		list:   func(r *model.Registers) *[]model.Purpose { return &r.Purposes },
		key:    func(x *model.Purpose) string { return x.ID },
		setKey: func(x *model.Purpose, k string) { x.ID = k },
		usedBy: func(r *model.Registers, x *model.Purpose) []string {
			var used []string
			for _, l := range r.Legalisations {
				if l.PurposeID == x.ID {
					used = append(used, "legalisations/"+l.ID)
				}
			}
			return used
		},
	})
	mountKind(s, add, kind[model.Legalisation]{
		name: "legalisations", schema: "Legalisation", keyName: "id",
		list:   func(r *model.Registers) *[]model.Legalisation { return &r.Legalisations },
		key:    func(x *model.Legalisation) string { return x.ID },
		setKey: func(x *model.Legalisation, k string) { x.ID = k },
		// Evidence naming the legalisation is not checked: the store has no
		// index by legalisation. Such evidence then fails validation and
		// stops counting; rules are checked.
		usedBy: func(r *model.Registers, x *model.Legalisation) []string {
			var used []string
			for _, ru := range r.Rules {
				if ru.LegalisationID != nil && *ru.LegalisationID == x.ID {
					used = append(used, "rules/"+ru.ID)
				}
			}
			return used
		},
		view: func(l model.Legalisation, now time.Time) any {
			return legalisationView{Legalisation: l, Status: l.StatusAt(now)}
		},
		// A client may send back what it read: the derived status is
		// accepted and ignored.
		decode: func(data []byte, o shapeOpts) (model.Legalisation, *requestError) {
			var v legalisationView
			_, err := parseDoc(data, &v, o)
			return v.Legalisation, err
		},
	})
	mountKind(s, add, kind[model.Rule]{
		name: "rules", schema: "Rule", keyName: "id",
		list:   func(r *model.Registers) *[]model.Rule { return &r.Rules },
		key:    func(x *model.Rule) string { return x.ID },
		setKey: func(x *model.Rule, k string) { x.ID = k },
	})
	mountKind(s, add, kind[model.Role]{
		name: "roles", schema: "Role", keyName: "name",
		list:   func(r *model.Registers) *[]model.Role { return &r.Roles },
		key:    func(x *model.Role) string { return x.Name },
		setKey: func(x *model.Role, k string) { x.Name = k },
	})
}

// legalisationView is a legalisation with its status derived at now
// (read-only: ignored on writes).
type legalisationView struct {
	model.Legalisation
	Status model.LegalisationStatus `json:"status,omitempty"`
}

func mountKind[T any](s *Server, add addFunc, k kind[T]) {
	if k.view == nil {
		k.view = func(x T, _ time.Time) any { return x }
	}
	if k.decode == nil {
		k.decode = func(data []byte, o shapeOpts) (T, *requestError) {
			var x T
			_, err := parseDoc(data, &x, o)
			return x, err
		}
	}
	// read reads a request body into T; missing members come back in
	// pending (reported with the validation). On failure it has answered.
	read := func(w http.ResponseWriter, r *http.Request, o shapeOpts) (x T, pending []model.FieldError, ok bool) {
		data, err := readBody(w, r, s.o.MaxBodyBytes)
		if err != nil {
			return x, nil, false
		}
		x, rerr := k.decode(data, o)
		if pending, ok = rerr.pending(); !ok {
			rerr.answer(w, s.o.MaxBodyBytes)
		}
		return x, pending, ok
	}
	keyOptional := shapeOpts{whole: true, optional: map[string]bool{k.keyName: true}}
	base := "/v1/" + k.name
	item := base + "/{" + k.keyName + "}"
	find := func(list []T, key string) int {
		for i := range list {
			if k.key(&list[i]) == key {
				return i
			}
		}
		return -1
	}

	add("GET", base, ScopeEditItems, "List "+k.name, "", func(w http.ResponseWriter, r *http.Request) {
		ix, err := s.o.Store.Registers(r.Context())
		if err != nil {
			s.storeFailed(w, r, "read registers", err)
			return
		}
		now := s.o.Clock()
		list := *k.list(ix.Registers)
		items := make([]any, len(list))
		for i := range list {
			items[i] = k.view(list[i], now)
		}
		setETag(w, ix.Version)
		writeJSON(w, http.StatusOK, map[string]any{"version": ix.Version, "items": items})
	})

	add("GET", item, ScopeEditItems, "Get one of "+k.name, "", func(w http.ResponseWriter, r *http.Request) {
		ix, err := s.o.Store.Registers(r.Context())
		if err != nil {
			s.storeFailed(w, r, "read registers", err)
			return
		}
		key := r.PathValue(k.keyName)
		list := *k.list(ix.Registers)
		i := find(list, key)
		if i < 0 {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s/%s does not exist", k.name, key))
			return
		}
		setETag(w, ix.Version)
		writeJSON(w, http.StatusOK, k.view(list[i], s.o.Clock()))
	})

	// A create may leave members out: they take their zero value (null for
	// the nullable ones). A replace may not.
	add("POST", base, ScopeEditItems, "Create one of "+k.name+" (absent members take their zero value)", k.schema, func(w http.ResponseWriter, r *http.Request) {
		x, pending, ok := read(w, r, shapeOpts{})
		if !ok {
			return
		}
		key := k.key(&x)
		s.writeRegisters(w, r, http.StatusCreated, func(regs *model.Registers) (regChange, bool) {
			list := k.list(regs)
			if find(*list, key) >= 0 {
				writeError(w, http.StatusConflict, "exists", fmt.Sprintf("%s/%s already exists; use PUT to replace it", k.name, key))
				return regChange{}, false
			}
			*list = append(*list, x)
			return regChange{
				pending: pending,
				action:  "register.create", object: k.name + "/" + key,
				prefix:   fmt.Sprintf("%s[%d].", k.name, len(*list)-1),
				result:   func(now time.Time) any { return k.view(x, now) },
				location: base + "/" + key,
			}, true
		})
	})

	add("PUT", item, ScopeEditItems, "Replace one of "+k.name+" (every member required; 422 names the missing ones)", k.schema, func(w http.ResponseWriter, r *http.Request) {
		x, pending, ok := read(w, r, keyOptional)
		if !ok {
			return
		}
		key := r.PathValue(k.keyName)
		if k.key(&x) == "" {
			k.setKey(&x, key)
		}
		if got := k.key(&x); got != key {
			writeValidation(w, []model.FieldError{{Field: k.keyName, Reason: fmt.Sprintf("must equal the %s in the path (%q, got %q); renaming is delete + create", k.keyName, key, got)}})
			return
		}
		s.writeRegisters(w, r, http.StatusOK, func(regs *model.Registers) (regChange, bool) {
			list := k.list(regs)
			i := find(*list, key)
			if i < 0 {
				writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s/%s does not exist; use POST %s to create it", k.name, key, base))
				return regChange{}, false
			}
			(*list)[i] = x
			return regChange{
				pending: pending,
				action:  "register.replace", object: k.name + "/" + key,
				prefix: fmt.Sprintf("%s[%d].", k.name, i),
				result: func(now time.Time) any { return k.view(x, now) },
			}, true
		})
	})

	add("PATCH", item, ScopeEditItems, "Change part of one of "+k.name+" (JSON merge patch, RFC 7396)", k.schema, func(w http.ResponseWriter, r *http.Request) {
		var zero T
		patch, _, err := readPatch(w, r, s.o.MaxBodyBytes, reflect.TypeOf(k.view(zero, time.Time{})), nil)
		if err != nil {
			return
		}
		key := r.PathValue(k.keyName)
		s.writeRegisters(w, r, http.StatusOK, func(regs *model.Registers) (regChange, bool) {
			list := k.list(regs)
			i := find(*list, key)
			if i < 0 {
				writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s/%s does not exist; use POST %s to create it", k.name, key, base))
				return regChange{}, false
			}
			x, ok := mergeInto(s, w, k.view((*list)[i], s.o.Clock()), patch, func(data []byte) (T, *requestError) {
				return k.decode(data, shapeOpts{whole: true, absentNull: true})
			})
			if !ok {
				return regChange{}, false
			}
			if got := k.key(&x); got != key {
				writeValidation(w, []model.FieldError{{Field: k.keyName, Reason: fmt.Sprintf("must equal the %s in the path (%q, got %q); renaming is delete + create", k.keyName, key, got)}})
				return regChange{}, false
			}
			(*list)[i] = x
			return regChange{
				action: "register.patch", object: k.name + "/" + key,
				prefix: fmt.Sprintf("%s[%d].", k.name, i),
				result: func(now time.Time) any { return k.view(x, now) },
			}, true
		})
	})

	add("DELETE", item, ScopeEditItems, "Delete one of "+k.name+" (409 while still referenced)", "", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue(k.keyName)
		s.writeRegisters(w, r, http.StatusOK, func(regs *model.Registers) (regChange, bool) {
			list := k.list(regs)
			i := find(*list, key)
			if i < 0 {
				writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s/%s does not exist", k.name, key))
				return regChange{}, false
			}
			if k.usedBy != nil {
				if used := k.usedBy(regs, &(*list)[i]); len(used) > 0 {
					hint := "change or delete those first"
					if k.name == "legalisations" {
						hint = "change or delete those first, or retire the legalisation (set retire_from)"
					}
					writeJSON(w, http.StatusConflict, apiError{
						Error:      "in_use",
						Message:    fmt.Sprintf("%s/%s is still referenced %d times, by %s; %s", k.name, key, len(used), strings.Join(used, ", "), hint),
						UsedBy:     used,
						References: len(used),
					})
					return regChange{}, false
				}
			}
			*list = append((*list)[:i:i], (*list)[i+1:]...)
			return regChange{
				action: "register.delete", object: k.name + "/" + key,
				result: func(time.Time) any { return map[string]string{"deleted": k.name + "/" + key} },
			}, true
		})
	})
}

// regChange describes an applied register change for the audit trail and
// the answer.
type regChange struct {
	action, object string
	// prefix is the changed object's path in the register document; it is
	// stripped from validation errors so that fields are named relative to
	// the object the client sent.
	prefix   string
	result   func(now time.Time) any
	location string
	// confirm is the request's "confirm": true, needed to turn
	// gdpr_enforced off.
	confirm bool
	// pending are the request document's missing members: the write is
	// refused with them and whatever else validation finds.
	pending []model.FieldError
}

// stripPrefix names fields relative to the object the client sent.
func (c regChange) stripPrefix(errs []model.FieldError) []model.FieldError {
	out := make([]model.FieldError, len(errs))
	for i, fe := range errs {
		if c.prefix != "" {
			fe.Field = strings.TrimPrefix(fe.Field, c.prefix)
		}
		out[i] = fe
	}
	return out
}

// mergeInto applies a merge patch to cur (what GET shows) and decodes the
// merged document, which must be whole. On failure it has answered.
func mergeInto[T any](s *Server, w http.ResponseWriter, cur any, patch map[string]any, decode func([]byte) (T, *requestError)) (T, bool) {
	var zero T
	b, err := json.Marshal(cur)
	if err == nil {
		b, err = applyMergePatch(b, patch)
	}
	if err != nil {
		s.log.Error("merge patch failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the patch could not be applied; see the server log")
		return zero, false
	}
	x, rerr := decode(b)
	if rerr != nil {
		rerr.answer(w, s.o.MaxBodyBytes)
		return zero, false
	}
	return x, true
}

// writeRegisters is every register write: read the current index, check
// If-Match, apply the change to a copy, guard the switch that turns GDPR
// enforcement off, validate the whole set, and save it with its audit entry
// under optimistic concurrency. apply answers itself and returns false to
// refuse. Nothing is stored unless all of it passes.
func (s *Server) writeRegisters(w http.ResponseWriter, r *http.Request, okStatus int, apply func(*model.Registers) (regChange, bool)) {
	ctx := r.Context()
	want, hasWant, err := ifMatch(w, r)
	if err != nil {
		return
	}
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	if hasWant && want != ix.Version {
		setETag(w, ix.Version)
		writeError(w, http.StatusPreconditionFailed, "precondition_failed", fmt.Sprintf("If-Match names version %d but the registers are at version %d; read them again", want, ix.Version))
		return
	}
	regs, err := cache.CloneRegisters(ix.Registers)
	if err != nil {
		s.storeFailed(w, r, "copy registers", err)
		return
	}
	c, ok := apply(regs)
	if !ok {
		return
	}
	detail := configChanges(ix.Registers.Config, regs.Config)
	if len(c.pending) > 0 {
		// An incomplete document is refused whatever it would switch.
		fes := c.pending
		if err := regs.Validate(); err != nil {
			var ve *model.ValidationError
			if errors.As(err, &ve) {
				fes = append(fes, c.stripPrefix(ve.Errors)...)
			}
		}
		writeValidation(w, fes)
		return
	}
	q := r.URL.Query()
	dryRun := q.Get("dry_run") == "true"
	confirmed := c.confirm || q.Get("confirm") == "true"
	if ix.Registers.Config.GdprEnforced && !regs.Config.GdprEnforced && !dryRun {
		// With enforcement off archived and expired bits count as active
		// (only what was obliviated stays hidden): data is shown again.
		// That is an administrator's deliberate act, never a side effect.
		if !hasScope(ctx, ScopeAdmin) {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("token %q may not turn gdpr_enforced off: that needs the %q scope (and \"confirm\": true)", actor(ctx), ScopeAdmin))
			return
		}
		if !confirmed {
			writeValidation(w, []model.FieldError{{Field: "confirm", Reason: "must be true to turn gdpr_enforced off (archived and expired data then counts as active for every caller; obliviated data stays hidden)"}})
			return
		}
	}
	now := s.o.Clock()
	regs.Config.TrackEnforcement(ix.Registers.Config, now)
	if err := regs.Validate(); err != nil {
		var ve *model.ValidationError
		if !errors.As(err, &ve) {
			s.storeFailed(w, r, "validate registers", err)
			return
		}
		writeValidation(w, c.stripPrefix(ve.Errors))
		return
	}
	if regs.Config.IdentityEntity == "" && (c.object == "config" || c.object == "registers") {
		field := "config.identity_entity"
		if c.prefix == "config." {
			field = "identity_entity"
		}
		writeValidation(w, []model.FieldError{{Field: field, Reason: "must be contact or phone_number"}})
		return
	}
	// Evidence names legalisations: one still named cannot go (its
	// evidence would silently stop covering); retiring it is the way out.
	if !s.legalisationsKept(w, r, ix.Registers, regs) {
		return
	}
	// What the change does to the subjects gdprgate knows: previewed on
	// ?dry_run=true, and a change creating more deletions than
	// lifecycle.max_deletions_per_change needs ?confirm=true.
	if dryRun || forget.LifecycleChanged(ix.Registers, regs) {
		stop := 0
		if !dryRun {
			stop = s.o.MaxDeletionsPerChange
		}
		pv, err := s.o.Forget.PreviewChange(ctx, ix, regs, now, stop)
		if err != nil {
			s.storeFailed(w, r, "preview the change", err)
			return
		}
		over := pv.Deletions.Total > s.o.MaxDeletionsPerChange
		if dryRun {
			writeJSON(w, http.StatusOK, map[string]any{
				"dry_run": true, "version": ix.Version, "preview": pv,
				"max_deletions_per_change": s.o.MaxDeletionsPerChange, "needs_confirm": over,
			})
			return
		}
		if over && !confirmed {
			writeJSON(w, http.StatusConflict, map[string]any{
				"error": "confirmation_required",
				"message": fmt.Sprintf("this change would create %s deletions, more than lifecycle.max_deletions_per_change (%d); preview it with ?dry_run=true and repeat it with ?confirm=true",
					atLeast(pv), s.o.MaxDeletionsPerChange),
				"preview": pv,
			})
			return
		}
		if pv.Deletions.Total > 0 {
			if detail == nil {
				detail = map[string]string{}
			}
			detail["deletions"] = strconv.Itoa(pv.Deletions.Total)
			detail["confirmed"] = strconv.FormatBool(confirmed)
		}
	}
	entry := audit.Entry{
		Time: now.UTC(), Actor: actor(ctx), Action: c.action, Object: c.object,
		Before: ix.Version, After: ix.Version + 1, Detail: detail,
	}
	v, err := s.o.Store.SaveRegisters(ctx, regs, ix.Version, entry)
	if err != nil {
		if errors.Is(err, cache.ErrConflict) {
			status, code := http.StatusConflict, "conflict"
			if hasWant {
				status, code = http.StatusPreconditionFailed, "precondition_failed"
			}
			writeError(w, status, code, "the registers changed while this request was processed; read them again and retry")
			return
		}
		s.storeFailed(w, r, "save registers", err)
		return
	}
	if detail["gdpr_enforced"] == "off" {
		s.log.WarnContext(ctx, "GDPR enforcement turned off: the lifecycle no longer hides archived, expired or obliviated data", "actor", entry.Actor, "version", v)
	}
	s.log.InfoContext(ctx, "registers changed", "actor", entry.Actor, "action", c.action, "object", c.object, "version", v)
	setETag(w, v)
	if c.location != "" {
		w.Header().Set("Location", c.location)
	}
	writeJSON(w, okStatus, c.result(now))
}

func atLeast(p forget.ChangePreview) string {
	if p.Partial {
		return "at least " + strconv.Itoa(p.Deletions.Total)
	}
	return strconv.Itoa(p.Deletions.Total)
}

// legalisationsKept refuses (409) a change removing a legalisation that
// stored evidence still names, saying how many records and where.
func (s *Server) legalisationsKept(w http.ResponseWriter, r *http.Request, old, cur *model.Registers) bool {
	kept := map[string]bool{}
	for _, l := range cur.Legalisations {
		kept[l.ID] = true
	}
	var removed []string
	for _, l := range old.Legalisations {
		if !kept[l.ID] {
			removed = append(removed, l.ID)
		}
	}
	if len(removed) == 0 {
		return true
	}
	counts, err := s.o.Store.EvidenceCounts(r.Context())
	if err != nil {
		s.storeFailed(w, r, "count evidence", err)
		return false
	}
	var used []string
	total := 0
	for _, id := range removed {
		if n := counts[id]; n > 0 {
			used = append(used, fmt.Sprintf("legalisations/%s: %d evidence records", id, n))
			total += n
		}
	}
	if total == 0 {
		return true
	}
	writeJSON(w, http.StatusConflict, apiError{
		Error: "in_use",
		Message: fmt.Sprintf("%d evidence records still name what this change removes (%s); that evidence would silently stop covering. Retire the legalisation instead (set retire_from): it then takes no new evidence and its existing evidence keeps its meaning",
			total, strings.Join(used, "; ")),
		UsedBy: used, References: total,
	})
	return false
}

// configChanges names the config members a write changes, for the audit
// entry (values of settings, no personal data). gdpr_enforced gets its own
// entry, "on" or "off", so that switching enforcement is easy to find.
func configChanges(old, cur model.Config) map[string]string {
	var changed []string
	if old.GdprEnforced != cur.GdprEnforced {
		changed = append(changed, "gdpr_enforced")
	}
	if old.DefaultSensitivity != cur.DefaultSensitivity {
		changed = append(changed, "default_sensitivity")
	}
	if old.IdentityEntity != cur.IdentityEntity {
		changed = append(changed, "identity_entity")
	}
	if old.PhoneNumberSensitivity != cur.PhoneNumberSensitivity {
		changed = append(changed, "phone_number_sensitivity")
	}
	if old.SuspendWipes != cur.SuspendWipes {
		changed = append(changed, "suspend_wipes")
	}
	if old.SuspendWipeIssue != cur.SuspendWipeIssue {
		changed = append(changed, "suspend_wipe_issue")
	}
	if len(changed) == 0 {
		return nil
	}
	d := map[string]string{"config_changed": strings.Join(changed, ",")}
	if old.GdprEnforced != cur.GdprEnforced {
		d["gdpr_enforced"] = map[bool]string{true: "on", false: "off"}[cur.GdprEnforced]
	}
	return d
}

func (s *Server) handleRegistersGet(w http.ResponseWriter, r *http.Request) {
	ix, err := s.o.Store.Registers(r.Context())
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	setETag(w, ix.Version)
	writeJSON(w, http.StatusOK, ix.Registers)
}

// confirmMember is the extra member config and registers writes accept.
var confirmMember = map[string]bool{"confirm": true}

// readWhole reads a whole document of out's type plus "confirm". On failure
// it has answered.
func (s *Server) readWhole(w http.ResponseWriter, r *http.Request, limit int64, out any) (confirm bool, pending []model.FieldError, ok bool) {
	data, err := readBody(w, r, limit)
	if err != nil {
		return false, nil, false
	}
	extra, rerr := parseDoc(data, out, shapeOpts{whole: true, extra: confirmMember})
	if pending, ok = rerr.pending(); ok {
		confirm, rerr = confirmFlag(extra)
		ok = rerr == nil
	}
	if !ok {
		rerr.answer(w, limit)
	}
	return confirm, pending, ok
}

func (s *Server) handleRegistersPut(w http.ResponseWriter, r *http.Request) {
	var in model.Registers
	confirm, pending, ok := s.readWhole(w, r, s.o.MaxImportBytes, &in)
	if !ok {
		return
	}
	s.writeRegisters(w, r, http.StatusOK, func(regs *model.Registers) (regChange, bool) {
		*regs = in
		return regChange{
			action: "registers.replace", object: "registers", confirm: confirm, pending: pending,
			result: func(time.Time) any { return map[string]string{"replaced": "registers"} },
		}, true
	})
}

func (s *Server) handleRegistersPatch(w http.ResponseWriter, r *http.Request) {
	patch, extra, err := readPatch(w, r, s.o.MaxImportBytes, reflect.TypeFor[model.Registers](), confirmMember)
	if err != nil {
		return
	}
	confirm, rerr := confirmFlag(extra)
	if rerr != nil {
		rerr.answer(w, s.o.MaxImportBytes)
		return
	}
	s.writeRegisters(w, r, http.StatusOK, func(regs *model.Registers) (regChange, bool) {
		in, ok := mergeInto(s, w, regs, patch, func(data []byte) (model.Registers, *requestError) {
			var x model.Registers
			_, rerr := parseDoc(data, &x, shapeOpts{whole: true, absentNull: true})
			return x, rerr
		})
		if !ok {
			return regChange{}, false
		}
		*regs = in
		return regChange{
			action: "registers.patch", object: "registers", confirm: confirm,
			result: func(time.Time) any { return map[string]string{"patched": "registers"} },
		}, true
	})
}

func (s *Server) handleConfigGet(w http.ResponseWriter, r *http.Request) {
	ix, err := s.o.Store.Registers(r.Context())
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	setETag(w, ix.Version)
	writeJSON(w, http.StatusOK, ix.Registers.Config)
}

func (s *Server) handleConfigPut(w http.ResponseWriter, r *http.Request) {
	var in model.Config
	confirm, pending, ok := s.readWhole(w, r, s.o.MaxBodyBytes, &in)
	if !ok {
		return
	}
	s.writeRegisters(w, r, http.StatusOK, func(regs *model.Registers) (regChange, bool) {
		regs.Config = in
		return regChange{
			action: "config.replace", object: "config", prefix: "config.", confirm: confirm, pending: pending,
			result: func(time.Time) any { return regs.Config },
		}, true
	})
}

func (s *Server) handleConfigPatch(w http.ResponseWriter, r *http.Request) {
	patch, extra, err := readPatch(w, r, s.o.MaxBodyBytes, reflect.TypeFor[model.Config](), confirmMember)
	if err != nil {
		return
	}
	confirm, rerr := confirmFlag(extra)
	if rerr != nil {
		rerr.answer(w, s.o.MaxBodyBytes)
		return
	}
	s.writeRegisters(w, r, http.StatusOK, func(regs *model.Registers) (regChange, bool) {
		in, ok := mergeInto(s, w, regs.Config, patch, func(data []byte) (model.Config, *requestError) {
			var x model.Config
			_, rerr := parseDoc(data, &x, shapeOpts{whole: true, absentNull: true})
			return x, rerr
		})
		if !ok {
			return regChange{}, false
		}
		regs.Config = in
		return regChange{
			action: "config.patch", object: "config", prefix: "config.", confirm: confirm,
			result: func(time.Time) any { return regs.Config },
		}, true
	})
}
