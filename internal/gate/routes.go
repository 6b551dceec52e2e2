package gate

import (
	"fmt"
	"math/bits"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/gdprgate/gdprgate/internal/canon"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy"
	"github.com/gdprgate/gdprgate/policy/model"
	"github.com/gdprgate/gdprgate/redact"
)

// route is a config route compiled for one register version: its path
// template split into segments, its field map resolved to bits and compiled
// for the rewriter, and the extractors for subjects in bodies.
type route struct {
	cfg *config.Route
	// index is the route's position in the config.
	index int
	// segs are the template's literal segments, case-folded (canon.Fold);
	// "" marks a parameter.
	segs []string
	// param is the index of the subject's path parameter, or -1.
	param int
	// comm is the fixed communication flag of an outbound route (0 when it
	// comes from the body).
	comm uint32
	// fields is the response rewriter (nil: nothing to redact).
	fields *redact.Map
	// subjectIn extracts the subject from a response body.
	subjectIn *redact.Map
	// confirmIn reads the answer of a route whose subject comes from the
	// request and is confirmed by the answer (subject.confirm): the field
	// map compiled with the confirming path as its subject path, or only
	// that path when the route maps no fields (nil: no confirm).
	confirmIn *redact.Map
	// idPattern is subject.id_pattern (nil: any id).
	idPattern *regexp.Regexp
	// originIn extracts the backend's creation instant of a single
	// subject from a response body (subject.origin_from).
	originIn *redact.Map
	// bodyPaths are read from the request body (canon.BodyFields): the
	// subject at bodySubject and the communication type at bodyComm (-1:
	// not from the body).
	bodyPaths             [][]string
	bodySubject, bodyComm int
	// writeFields are the mapped fields a write route's body may change
	// (compileWriteFields); nil on other kinds.
	writeFields []writeField
	// unseen watches the answers for mapped paths they never contain
	// (nil: off, or no fields). It outlives the table: see Gate.unseen.
	unseen *unseen
	// commBody are the communication values read from the request body:
	// their index in bodyPaths by value key ("channel"); commIDPath is
	// where the record's id is in the backend's answer (nil: not there).
	commBody   map[string]int
	commIDPath []string
}

// table is the compiled route map for one register version.
type table struct {
	version int64
	// index is the register index the table was compiled against; it
	// serves decisions while the store is unreachable under fail-open.
	index    *model.Index
	byMethod map[string][]*route
	// all are the routes in config order (a sealed plan names its route
	// by position).
	all []*route
}

// compile builds the route table. Sensitivity names are resolved against ix,
// so the table is rebuilt when the registers change.
func compile(cfg *config.Config, ix *model.Index, hashKey []byte) (*table, error) {
	t := &table{version: ix.Version, index: ix, byMethod: map[string][]*route{}}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		r := &route{cfg: rc, param: -1, bodySubject: -1, bodyComm: -1, index: i}
		for j, seg := range splitPath(rc.Path) {
			if strings.HasPrefix(seg, "{") {
				r.segs = append(r.segs, "")
				if rc.Subject != nil && rc.Subject.From == config.FromPath && seg == "{"+rc.Subject.Name+"}" {
					r.param = j
				}
				continue
			}
			r.segs = append(r.segs, canon.Fold(seg))
		}
		if rc.CommType != "" {
			r.comm = model.CommTypes[rc.CommType]
		}
		oi, err := compileOrigin(rc)
		if err != nil {
			return nil, fmt.Errorf("route %s (line %d): subject.origin_from: %w", rc.Name, rc.Line, err)
		}
		r.originIn = oi
		var fieldSpec redact.Spec
		if len(rc.Fields) > 0 {
			spec := redact.Spec{HashKey: hashKey, ExactCase: rc.ExactCase}
			if rc.Subject != nil && (rc.Subject.From == config.FromItem || rc.Subject.From == config.FromResponseBody) {
				spec.SubjectPath = rc.Subject.Path
			}
			paths := make([]string, 0, len(rc.Fields))
			for p := range rc.Fields {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			bits := make(map[string]int, len(paths))
			for _, p := range paths {
				bit, err := resolveBit(ix, rc.Fields[p])
				if err != nil {
					return nil, fmt.Errorf("route %q (line %d) field %q: %w", rc.Name, rc.Line, p, err)
				}
				bits[p] = bit
				act := cfg.Redaction.Default
				if s := ix.ByBit[bit]; s != nil {
					if a, ok := cfg.Redaction.BySensitivity[s.ID]; ok {
						act = a
					}
				}
				if a, ok := rc.Actions[p]; ok {
					act = a
				}
				action, err := redact.ParseAction(act)
				if err != nil {
					return nil, err
				}
				spec.Fields = append(spec.Fields, redact.FieldSpec{Path: p, Bit: bit, Action: action, Mask: cfg.Redaction.Mask})
			}
			m, err := redact.Compile(spec)
			if err != nil {
				return nil, fmt.Errorf("route %q (line %d): %w", rc.Name, rc.Line, err)
			}
			r.fields = m
			fieldSpec = spec
			if rc.Kind == policy.KindWrite {
				r.writeFields = compileWriteFields(bits)
			}
		}
		if s := rc.Subject; s != nil && s.Confirm != "" {
			spec := redact.Spec{SubjectPath: s.Confirm, ExactCase: rc.ExactCase}
			if r.fields != nil {
				spec = fieldSpec
				spec.SubjectPath = s.Confirm
			}
			m, err := redact.Compile(spec)
			if err != nil {
				return nil, fmt.Errorf("route %q (line %d) subject.confirm: %w", rc.Name, rc.Line, err)
			}
			r.confirmIn = m
		}
		if r.idPattern, err = rc.Subject.IDRegexp(); err != nil {
			return nil, fmt.Errorf("route %q (line %d) subject: %w", rc.Name, rc.Line, err)
		}
		if s := rc.Subject; s != nil && s.From == config.FromResponseBody {
			m, err := redact.Compile(redact.Spec{SubjectPath: s.Path, ExactCase: rc.ExactCase})
			if err != nil {
				return nil, fmt.Errorf("route %q (line %d) subject: %w", rc.Name, rc.Line, err)
			}
			r.subjectIn = m
		}
		if s := rc.Subject; s != nil && s.From == config.FromBody {
			r.bodySubject = len(r.bodyPaths)
			r.bodyPaths = append(r.bodyPaths, canon.BodyPath(s.Path))
		}
		if rc.CommTypeFrom != "" {
			r.bodyComm = len(r.bodyPaths)
			r.bodyPaths = append(r.bodyPaths, canon.BodyPath(rc.CommTypeFrom))
		}
		if c := rc.Communication; c != nil {
			r.commBody = map[string]int{}
			for key, v := range commValues(c) {
				switch {
				case v.Value != "":
				case v.From == config.FromBody:
					r.commBody[key] = len(r.bodyPaths)
					r.bodyPaths = append(r.bodyPaths, canon.BodyPath(v.Path))
				case v.From == config.FromResponseBody && key == "id":
					r.commIDPath = canon.BodyPath(v.Path)
				}
			}
		}
		t.byMethod[rc.Method] = append(t.byMethod[rc.Method], r)
		t.all = append(t.all, r)
	}
	return t, nil
}

// PhoneNumberSensitivity is the sensitivity name a route map gives phone
// number fields: the registers' config.phone_number_sensitivity.
const PhoneNumberSensitivity = "phone_number"

// resolveBit turns a sensitivity id, a bit number or phone_number into a
// bit.
func resolveBit(ix *model.Index, s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > model.MaxBit {
			return 0, fmt.Errorf("bit %d out of range 0..31", n)
		}
		return n, nil
	}
	sens, ok := ix.Sensitivities[s]
	if !ok && s == PhoneNumberSensitivity {
		// The manual's GdprSensivityOfPhoneNumbers: the sensitivity of
		// phone numbers, "the value from the table Sensitivity > List,
		// column Bit mask".
		m := ix.Registers.Config.PhoneNumberSensitivity
		if m == 0 || m&(m-1) != 0 {
			return 0, fmt.Errorf("fields mapped to %s need config.phone_number_sensitivity to be one sensitivity's mask (it is %d)", PhoneNumberSensitivity, m)
		}
		return bits.TrailingZeros32(m), nil
	}
	if !ok {
		return 0, fmt.Errorf("no sensitivity %q in the registers", s)
	}
	return sens.Bit, nil
}

// match finds the route for method and a canonical path (canon.Parse) and
// returns the value of its subject path parameter, if any. Literal segments
// are compared case-insensitively (canon.FoldEqual). Routes are tried in
// config order, first match wins, so list specific routes first.
func (t *table) match(method, path string) (*route, string) {
	routes := t.byMethod[method]
	if len(routes) == 0 && method == "HEAD" {
		routes = t.byMethod["GET"]
	}
	for _, r := range routes {
		if v, ok := r.matchPath(path); ok {
			return r, v
		}
	}
	return nil, ""
}

// mappedElsewhere reports whether path matches a route of a method other
// than method (HEAD counts as GET).
func (t *table) mappedElsewhere(method, path string) bool {
	for m, routes := range t.byMethod {
		if m == method || m == "HEAD" && method == "GET" || m == "GET" && method == "HEAD" {
			continue
		}
		for _, r := range routes {
			if _, ok := r.matchPath(path); ok {
				return true
			}
		}
	}
	return false
}

// mappedAny reports whether path matches a route of any method.
func (t *table) mappedAny(path string) bool {
	for _, routes := range t.byMethod {
		for _, r := range routes {
			if _, ok := r.matchPath(path); ok {
				return true
			}
		}
	}
	return false
}

func (r *route) matchPath(path string) (param string, ok bool) {
	if path == "" || path[0] != '/' {
		return "", false // "*"
	}
	rest := path[1:]
	for i, seg := range r.segs {
		if rest == "" {
			return "", false // the path has fewer segments than the template
		}
		cur := rest
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			cur, rest = rest[:j], rest[j+1:]
		} else {
			rest = ""
		}
		switch {
		case seg == "":
			if i == r.param {
				param = cur
			}
		case !canon.FoldEqual(seg, cur):
			return "", false
		}
	}
	return param, rest == ""
}

// splitPath splits a path into its segments; "/" has none.
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// pathParam is the value of the template's {name} in a canonical path the
// route matched ("" when the template has no such parameter).
func (r *route) pathParam(path, name string) string {
	idx := -1
	for j, seg := range splitPath(r.cfg.Path) {
		if seg == "{"+name+"}" {
			idx = j
		}
	}
	if idx < 0 {
		return ""
	}
	segs := splitPath(path)
	if idx >= len(segs) {
		return ""
	}
	return segs[idx]
}
