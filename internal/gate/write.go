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
	if req.BodyPartial || len(req.Body) > g.cfg.Body.MaxRequestBytes {
		return deny(http.StatusRequestEntityTooLarge, "write_body_too_large", "the body of a write is larger than gdprgate may read to check and audit the fields it changes (body.max_request_bytes)"), false
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

// bodyAnnounced reports whether the request's headers announce a body, or
// the front-end could not tell.
func bodyAnnounced(req *Request) bool {
	cl := strings.TrimSpace(req.Header("content-length"))
	return cl != "" && cl != "0" || req.Header("transfer-encoding") != "" || req.BodyUnseen
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

// writeField is one mapped field of a write route and its bit.
type writeField struct {
	name string // the route map's field path, as given
	bit  int
}

// compileWriteFields prepares the write check of a route from its field
// bits (path -> bit), sorted by path so that refusals name fields in a
// stable order.
func compileWriteFields(bits map[string]int) []writeField {
	out := make([]writeField, 0, len(bits))
	for p, bit := range bits {
		out = append(out, writeField{name: p, bit: bit})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// changedFields reads which mapped fields a write's body changes — those
// its field paths select a value of, whatever the value (gdprgate cannot
// know the stored one) — and their bits. The body must be one JSON
// document every parser reads the same way (canon.BodyFields: strict, no
// key given twice, also under case folding); the paths then select as in
// the response rewriter (redact.Map.Select: gjson paths, keys
// case-insensitive unless exact_case), so that a backend binding "EMAIL"
// to email cannot be written past the check. A body whose root the paths
// cannot reach (an array for object paths) is refused: it would change
// nothing the check sees.
func (r *route) changedFields(body []byte) (names []string, mask uint32, err error) {
	if len(r.writeFields) == 0 {
		return nil, 0, nil
	}
	if _, err := canon.BodyFields(body, nil); err != nil {
		return nil, 0, err
	}
	obj, arr := r.fields.Root()
	if root := firstByte(body); root == '{' && !obj || root == '[' && !arr {
		return nil, 0, &canon.Error{Reason: "write_body_unexpected", Message: "the write's body is not the kind of JSON document (object or array) its mapped fields are in"}
	}
	names, err = r.fields.Select(body)
	if err != nil {
		return nil, 0, &canon.Error{Reason: "write_body_unreadable", Message: "the write's body cannot be read"}
	}
	for _, n := range names {
		for _, f := range r.writeFields {
			if f.name == n {
				mask |= 1 << uint(f.bit)
			}
		}
	}
	return names, mask, nil
}

// firstByte is the first byte of a JSON document after white space.
func firstByte(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
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
