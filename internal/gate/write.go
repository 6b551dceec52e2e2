package gate

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/gdprgate/gdprgate/internal/canon"
	"github.com/gdprgate/gdprgate/policy"
)

// writeFacts reads which mapped fields a write changes into f.WriteMask and
// ex.changed. A write whose body gdprgate did not get (too large for it, or
// a front-end not configured to send it) cannot be checked and is refused.
func (g *Gate) writeFacts(r *route, req *Request, ex *Exchange, f *policy.Facts) (Verdict, bool) {
	if len(r.writeFields) == 0 {
		return Verdict{}, true
	}
	if len(req.Body) == 0 {
		if bodyAnnounced(req) {
			return deny(http.StatusBadRequest, "write_body_unseen", "gdprgate must see the body of a write to check the fields it changes (it is too large, or the front-end does not send request bodies for this route)"), false
		}
		return Verdict{}, true
	}
	names, mask, err := r.changedFields(req.Body)
	if err != nil {
		return badRequest(err), false
	}
	f.WriteMask, ex.changed = mask, names
	return Verdict{}, true
}

// bodyAnnounced reports whether the request's headers announce a body.
func bodyAnnounced(req *Request) bool {
	cl := strings.TrimSpace(req.Header("content-length"))
	return cl != "" && cl != "0" || req.Header("transfer-encoding") != ""
}

// denyFields is a refused write: the policy's denial naming the fields
// (paths of the route map, never values) the caller may not change.
func denyFields(d policy.Decision, fields []string) Verdict {
	body, _ := json.Marshal(struct {
		Error   string   `json:"error"`
		Message string   `json:"message"`
		Fields  []string `json:"fields"`
	}{d.Reason, d.Message, fields})
	v := deny(d.Status, d.Reason, d.Message)
	v.Body = body
	v.ResponseHeaders = d.Headers
	return v
}

// writeField is one mapped field of a write route, as the request body
// can change it.
type writeField struct {
	name string // the route map's field path, as given
	bit  int
	// at is where the body changes it: the field path's keys up to the
	// first wildcard or array segment ("contacts.#.email" is changed when
	// "contacts" is present), case-folded as canon.BodyFields reads keys.
	at []string
}

// compileWriteFields prepares the write check of a route from its field
// bits (path -> bit), sorted by path so that refusals name fields in a
// stable order.
func compileWriteFields(bits map[string]int) []writeField {
	out := make([]writeField, 0, len(bits))
	for p, bit := range bits {
		keys := canon.BodyPath(p)
		for i, k := range keys {
			if k == "#" || strings.ContainsAny(k, "*?") {
				keys = keys[:i]
				break
			}
		}
		out = append(out, writeField{name: p, bit: bit, at: keys})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// changedFields reads which mapped fields a write's body changes — present
// at all, whatever the value (gdprgate cannot know the stored one) — and
// their bits. The body is read the one way canon.BodyFields reads request
// bodies: strict JSON, no key given twice even under case folding, keys
// matched case-insensitively, so that a backend binding "EMAIL" to email
// cannot be written past the check. A field whose path begins with an
// array or wildcard segment counts as changed by any body.
func (r *route) changedFields(body []byte) (names []string, mask uint32, err error) {
	fields := r.writeFields
	if len(fields) == 0 {
		return nil, 0, nil
	}
	// canon.BodyFields reads at most 64 paths at a time.
	for start := 0; start < len(fields); start += 64 {
		chunk := fields[start:min(start+64, len(fields))]
		paths := make([][]string, 0, len(chunk))
		for _, f := range chunk {
			paths = append(paths, f.at)
		}
		found, err := canon.BodyFields(body, paths)
		if err != nil {
			return nil, 0, err
		}
		for i, f := range chunk {
			if len(f.at) == 0 || found[i].Found {
				names = append(names, f.name)
				mask |= 1 << uint(f.bit)
			}
		}
	}
	return names, mask, nil
}

// deniedFields names the changed fields whose bits are in denied.
func (r *route) deniedFields(changed []string, denied uint32) []string {
	var out []string
	for _, f := range r.writeFields {
		if denied&(1<<uint(f.bit)) == 0 {
			continue
		}
		for _, c := range changed {
			if c == f.name {
				out = append(out, f.name)
				break
			}
		}
	}
	return out
}
