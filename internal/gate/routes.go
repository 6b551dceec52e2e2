package gate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy/model"
	"github.com/gdprgate/gdprgate/redact"
)

// route is a config route compiled for one register version: its path
// template split into segments, its field map resolved to bits and compiled
// for the rewriter, and the extractors for subjects in bodies.
type route struct {
	cfg  *config.Route
	segs []string // literal segments; "" marks a parameter
	// param is the index of the subject's path parameter, or -1.
	param int
	// comm is the fixed communication flag of an outbound route (0 when it
	// comes from the body).
	comm uint32
	// fields is the response rewriter (nil: nothing to redact).
	fields *redact.Map
	// subjectIn extracts the subject from a request or response body.
	subjectIn *redact.Map
	// commIn extracts the communication type from the request body.
	commIn *redact.Map
}

// table is the compiled route map for one register version.
type table struct {
	version int64
	// index is the register index the table was compiled against; it
	// serves decisions while the store is unreachable under fail-open.
	index    *model.Index
	byMethod map[string][]*route
}

// compile builds the route table. Sensitivity names are resolved against ix,
// so the table is rebuilt when the registers change.
func compile(cfg *config.Config, ix *model.Index, hashKey []byte) (*table, error) {
	t := &table{version: ix.Version, index: ix, byMethod: map[string][]*route{}}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		r := &route{cfg: rc, param: -1}
		for j, seg := range splitPath(rc.Path) {
			if strings.HasPrefix(seg, "{") {
				r.segs = append(r.segs, "")
				if rc.Subject != nil && rc.Subject.From == config.FromPath && seg == "{"+rc.Subject.Name+"}" {
					r.param = j
				}
				continue
			}
			r.segs = append(r.segs, seg)
		}
		if rc.CommType != "" {
			r.comm = model.CommTypes[rc.CommType]
		}
		if len(rc.Fields) > 0 {
			spec := redact.Spec{HashKey: hashKey}
			if rc.Subject != nil && (rc.Subject.From == config.FromItem || rc.Subject.From == config.FromResponseBody) {
				spec.SubjectPath = rc.Subject.Path
			}
			paths := make([]string, 0, len(rc.Fields))
			for p := range rc.Fields {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			for _, p := range paths {
				bit, err := resolveBit(ix, rc.Fields[p])
				if err != nil {
					return nil, fmt.Errorf("route %q (line %d) field %q: %w", rc.Name, rc.Line, p, err)
				}
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
		}
		if s := rc.Subject; s != nil && (s.From == config.FromBody || s.From == config.FromResponseBody) {
			m, err := redact.Compile(redact.Spec{SubjectPath: s.Path})
			if err != nil {
				return nil, fmt.Errorf("route %q (line %d) subject: %w", rc.Name, rc.Line, err)
			}
			r.subjectIn = m
		}
		if rc.CommTypeFrom != "" {
			m, err := redact.Compile(redact.Spec{SubjectPath: rc.CommTypeFrom})
			if err != nil {
				return nil, fmt.Errorf("route %q (line %d) comm_type_from: %w", rc.Name, rc.Line, err)
			}
			r.commIn = m
		}
		t.byMethod[rc.Method] = append(t.byMethod[rc.Method], r)
	}
	return t, nil
}

// resolveBit turns a sensitivity id or a bit number into a bit.
func resolveBit(ix *model.Index, s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > model.MaxBit {
			return 0, fmt.Errorf("bit %d out of range 0..31", n)
		}
		return n, nil
	}
	sens, ok := ix.Sensitivities[s]
	if !ok {
		return 0, fmt.Errorf("no sensitivity %q in the registers", s)
	}
	return sens.Bit, nil
}

// match finds the route for method and path (without query) and returns the
// value of its subject path parameter, if any. Literal segments win over
// parameters: routes are tried in config order, first match wins, so list
// specific routes first.
func (t *table) match(method, path string) (*route, string) {
	routes := t.byMethod[method]
	if len(routes) == 0 && method == "HEAD" {
		routes = t.byMethod["GET"]
	}
	path = strings.Trim(path, "/")
	for _, r := range routes {
		if v, ok := r.matchPath(path); ok {
			return r, v
		}
	}
	return nil, ""
}

func (r *route) matchPath(path string) (param string, ok bool) {
	rest := path
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
			if cur == "" {
				return "", false
			}
			if i == r.param {
				param = cur
			}
		case seg != cur:
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
