package envoytest

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// header is one entry of an Envoy header map. Envoy keeps headers as an ordered list of
// lower-case keys, repeated keys allowed, so the emulator does the same instead of using
// http.Header (which canonicalises keys and would hide pseudo-headers).
type header struct{ key, value string }

// headerMap is an ordered, lower-case, multi-valued header list like Envoy's HeaderMap.
type headerMap []header

func (h headerMap) get(key string) (string, bool) {
	key = strings.ToLower(key)
	for _, e := range h {
		if e.key == key {
			return e.value, true
		}
	}
	return "", false
}

func (h headerMap) has(key string) bool { _, ok := h.get(key); return ok }

// values returns all values of key, for the CheckRequest map which joins them with ",".
func (h headerMap) values(key string) []string {
	var out []string
	for _, e := range h {
		if e.key == key {
			out = append(out, e.value)
		}
	}
	return out
}

// set replaces every entry of key with one entry (Envoy's setCopy), keeping the position of
// the first occurrence so pseudo-headers stay in front.
func (h *headerMap) set(key, value string) {
	key = strings.ToLower(key)
	out := (*h)[:0]
	done := false
	for _, e := range *h {
		if e.key != key {
			out = append(out, e)
			continue
		}
		if !done {
			out = append(out, header{key, value})
			done = true
		}
	}
	if !done {
		out = append(out, header{key, value})
	}
	*h = out
}

// add appends a separate entry (Envoy's addCopy).
func (h *headerMap) add(key, value string) {
	*h = append(*h, header{strings.ToLower(key), value})
}

// appendJoin appends value to the existing entry with a comma (Envoy's appendCopy, used for
// the deprecated `append: true` of ext_authz).
func (h *headerMap) appendJoin(key, value string) {
	key = strings.ToLower(key)
	for i, e := range *h {
		if e.key == key {
			(*h)[i].value = e.value + "," + value
			return
		}
	}
	h.add(key, value)
}

func (h *headerMap) remove(key string) {
	key = strings.ToLower(key)
	out := (*h)[:0]
	for _, e := range *h {
		if e.key != key {
			out = append(out, e)
		}
	}
	*h = out
}

func (h headerMap) clone() headerMap { return append(headerMap(nil), h...) }

// toProto renders the map as ext_proc sends it: raw_value set, value empty (Envoy's
// send_header_raw_value behaviour, the default in current releases).
func (h headerMap) toProto() *corev3.HeaderMap {
	out := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, len(h))}
	for _, e := range h {
		out.Headers = append(out.Headers, &corev3.HeaderValue{Key: e.key, RawValue: []byte(e.value)})
	}
	return out
}

// httpHeader converts to http.Header without pseudo-headers.
func (h headerMap) httpHeader() http.Header {
	out := http.Header{}
	for _, e := range h {
		if strings.HasPrefix(e.key, ":") {
			continue
		}
		out.Add(e.key, e.value)
	}
	return out
}

// MutationRules mirrors the subset of envoy.config.common.mutation_rules.v3.HeaderMutationRules
// that decides what an ext_proc processor may change. The zero value is Envoy's default
// (no mutation_rules configured).
type MutationRules struct {
	// DisallowIsError turns a rejected mutation into a 500 instead of silently ignoring it.
	DisallowIsError bool
	// AllowAllRouting permits changing host, :authority, :method and :scheme.
	AllowAllRouting bool
	// AllowEnvoy permits changing x-envoy-* headers.
	AllowEnvoy bool
	// DisallowSystem rejects every ":"-prefixed header.
	DisallowSystem bool
	// DisallowAll rejects every mutation.
	DisallowAll bool
}

type checkOp int

const (
	opSet checkOp = iota
	opAppend
	opRemove
)

type checkResult int

const (
	checkOK checkResult = iota
	checkIgnore
	checkFail
)

// routingHeaders are the headers Envoy's mutation checker refuses unless allow_all_routing.
var routingHeaders = map[string]bool{"host": true, ":authority": true, ":method": true, ":scheme": true}

func (r MutationRules) check(op checkOp, name, value string) checkResult {
	if r.allowed(op, name) && (op == opRemove || validValue(name, value)) {
		return checkOK
	}
	if r.DisallowIsError {
		return checkFail
	}
	return checkIgnore
}

func (r MutationRules) allowed(op checkOp, name string) bool {
	if op == opRemove && !modifiable(name) {
		// Envoy never lets anyone remove host or a pseudo-header, whatever the rules.
		return false
	}
	if r.DisallowAll {
		return false
	}
	if !r.AllowAllRouting && routingHeaders[name] {
		return false
	}
	if strings.HasPrefix(name, ":") && (op == opAppend || r.DisallowSystem) {
		return false
	}
	if !r.AllowEnvoy && strings.HasPrefix(name, "x-envoy") {
		return false
	}
	return true
}

// modifiable is Envoy's HeaderUtility::isModifiableHeader: not host, not ":"-prefixed.
func modifiable(name string) bool {
	return name != "" && name[0] != ':' && name != "host"
}

func validValue(name, value string) bool {
	if !strings.HasPrefix(name, ":") && !validHeaderValue(value) {
		return false
	}
	if name == ":status" {
		n, err := strconv.Atoi(value)
		if err != nil || n < 200 {
			return false
		}
	}
	return true
}

func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/;<=>?@[\\]{}", c) >= 0 {
			if !(i == 0 && c == ':') {
				return false
			}
		}
	}
	return true
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == 0 || c == '\r' || c == '\n' {
			return false
		}
	}
	return true
}

// errInvalidMutation marks mutation failures that Envoy turns into a 500 local reply.
var errInvalidMutation = errors.New("invalid header mutation")

// applyHeaderMutation applies an ext_proc HeaderMutation the way Envoy's
// MutationUtils::applyHeaderMutations does: removals first, then sets; rejected changes are
// ignored (and reported through ignored) unless the rules make them an error.
func applyHeaderMutation(m *extprocv3.HeaderMutation, h *headerMap, replacing bool, rules MutationRules, ignored func(string)) error {
	if m == nil {
		return nil
	}
	for _, name := range m.GetRemoveHeaders() {
		if !validHeaderName(name) {
			return fmt.Errorf("%w: invalid character in remove_headers %q", errInvalidMutation, name)
		}
		name = strings.ToLower(name)
		switch rules.check(opRemove, name, "") {
		case checkOK:
			h.remove(name)
		case checkIgnore:
			ignored("remove " + name)
		case checkFail:
			return fmt.Errorf("%w: invalid attempt to remove %s", errInvalidMutation, name)
		}
	}
	for _, sh := range m.GetSetHeaders() {
		hv := sh.GetHeader()
		if hv == nil {
			continue
		}
		if hv.GetValue() != "" && len(hv.GetRawValue()) > 0 {
			return fmt.Errorf("%w: only one of value or raw_value in the HeaderValue message should be set (%s)", errInvalidMutation, hv.GetKey())
		}
		// Envoy reads raw_value only; a processor that fills `value` sets an empty header.
		value := string(hv.GetRawValue())
		if hv.GetValue() != "" {
			ignored("set " + strings.ToLower(hv.GetKey()) + ": value used instead of raw_value; Envoy reads raw_value and sets an empty header")
		}
		if !validHeaderName(hv.GetKey()) || !validHeaderValue(value) {
			return fmt.Errorf("%w: invalid character in set_headers %q", errInvalidMutation, hv.GetKey())
		}
		name := strings.ToLower(hv.GetKey())
		var appendMode bool
		op := opSet
		apply := true
		if sh.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			// append_action is the enum's zero value, which Envoy cannot tell from "unset": it
			// falls back to the deprecated `append` wrapper, whose default is false (overwrite).
			appendMode = sh.GetAppend().GetValue()
		} else {
			switch sh.GetAppendAction() {
			case corev3.HeaderValueOption_ADD_IF_ABSENT:
				apply = !h.has(name)
				appendMode = true
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
				appendMode = false
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
				apply = h.has(name)
			default:
				return fmt.Errorf("%w: invalid append_action for %s", errInvalidMutation, name)
			}
		}
		if !apply {
			continue
		}
		if appendMode && h.has(name) {
			op = opAppend
		}
		res := rules.check(op, name, value)
		if replacing && name == ":method" {
			// Envoy lets CONTINUE_AND_REPLACE change :method for compatibility.
			res = checkOK
		}
		switch res {
		case checkOK:
			if appendMode {
				h.add(name, value)
			} else {
				h.set(name, value)
			}
		case checkIgnore:
			ignored("set " + name)
		case checkFail:
			return fmt.Errorf("%w: invalid attempt to modify %s", errInvalidMutation, name)
		}
	}
	return nil
}
