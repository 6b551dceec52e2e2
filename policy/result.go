package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// ReasonPolicyDenied labels a denial by a policy that gives no reason of its
// own (a boolean false, an opa-envoy-plugin object without "reason").
const ReasonPolicyDenied = "policy_denied"

// reasonPattern keeps policy-chosen reasons usable as metric labels.
var reasonPattern = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// parseResult reads the policy's result in any of the shapes gdprgate
// accepts: its own decision object (has "allow"), opa-envoy-plugin's
// boolean, or opa-envoy-plugin's object (has "allowed").
func parseResult(v any) (Decision, error) {
	switch x := v.(type) {
	case bool:
		d := Decision{Allow: x, Shape: ShapeBool, Status: http.StatusOK, Reason: "allowed"}
		if !x {
			d.Status, d.Reason = http.StatusForbidden, ReasonPolicyDenied
		}
		return d, nil
	case map[string]any:
		if _, ok := x["allowed"]; ok {
			return parseEnvoyResult(x)
		}
		d, err := parseDecision(x)
		d.Shape, d.MaskSet = ShapeGDPR, true
		return d, err
	}
	return Decision{}, fmt.Errorf("result is %T: not an object (nor a boolean)", v)
}

// parseEnvoyResult reads opa-envoy-plugin's object with its meaning:
// http_status and body only matter when the request is denied (default 403,
// no body), request_headers_to_remove and response_headers_to_add only when
// it is allowed. visible_mask and reason are gdprgate's additions. Query
// parameter mutations are refused rather than silently ignored: gdprgate
// matched the route and its subject on the query the client sent.
func parseEnvoyResult(obj map[string]any) (Decision, error) {
	d := Decision{Shape: ShapeEnvoy}
	var ok bool
	if d.Allow, ok = obj["allowed"].(bool); !ok {
		return Decision{}, fmt.Errorf("result.allowed is %T, not a boolean", obj["allowed"])
	}
	for _, k := range []string{"query_parameters_to_set", "query_parameters_to_remove"} {
		if _, present := obj[k]; present {
			return Decision{}, fmt.Errorf("result.%s is not supported by gdprgate", k)
		}
	}
	var err error
	if d.EnvoyHeaders, err = headerList(obj, "headers"); err != nil {
		return Decision{}, err
	}
	if raw, present := obj["dynamic_metadata"]; present {
		if d.DynamicMetadata, ok = raw.(map[string]any); !ok {
			return Decision{}, fmt.Errorf("result.dynamic_metadata is %T, not an object", raw)
		}
	}
	if _, present := obj["visible_mask"]; present {
		mask, err := number(obj, "visible_mask", true, 0, math.MaxUint32)
		if err != nil {
			return Decision{}, err
		}
		d.VisibleMask, d.MaskSet = uint32(mask), true
	}
	if r, present := obj["reason"]; present {
		s, ok := r.(string)
		if !ok || !reasonPattern.MatchString(s) {
			return Decision{}, errors.New("result.reason is not a lower-case identifier of at most 64 characters")
		}
		d.Reason = s
	}
	if d.Allow {
		d.Status = http.StatusOK
		if d.Reason == "" {
			d.Reason = "allowed"
		}
		if d.ResponseHeadersToAdd, err = headerList(obj, "response_headers_to_add"); err != nil {
			return Decision{}, err
		}
		if raw, present := obj["request_headers_to_remove"]; present {
			list, ok := raw.([]any)
			if !ok {
				return Decision{}, fmt.Errorf("result.request_headers_to_remove is %T, not an array", raw)
			}
			for _, e := range list {
				s, ok := e.(string)
				if !ok {
					return Decision{}, fmt.Errorf("result.request_headers_to_remove holds a %T, not a string", e)
				}
				d.RequestHeadersToRemove = append(d.RequestHeadersToRemove, s)
			}
		}
		return d, nil
	}
	if d.Reason == "" {
		d.Reason = ReasonPolicyDenied
	}
	d.Status = http.StatusForbidden
	if _, present := obj["http_status"]; present {
		status, err := number(obj, "http_status", true, 0, math.MaxInt32)
		if err != nil {
			return Decision{}, err
		}
		if _, known := typev3.StatusCode_name[int32(status)]; !known || http.StatusText(int(status)) == "" {
			return Decision{}, fmt.Errorf("result.http_status %d is not an HTTP status Envoy can send", status)
		}
		d.Status = int(status)
	}
	if raw, present := obj["body"]; present {
		if d.Body, ok = raw.(string); !ok {
			return Decision{}, fmt.Errorf("result.body is %T, not a string", raw)
		}
	}
	return d, nil
}

// headerList reads an object of header -> string or list of strings, or a
// list of such objects, keeping every value (opa-envoy-plugin sends each as
// its own header).
func headerList(obj map[string]any, key string) ([]Header, error) {
	raw, present := obj[key]
	if !present {
		return nil, nil
	}
	var out []Header
	add := func(m map[string]any) error {
		for k, v := range m {
			switch x := v.(type) {
			case string:
				out = append(out, Header{k, x})
			case []any:
				for _, e := range x {
					s, ok := e.(string)
					if !ok {
						return fmt.Errorf("result.%s[%q] holds a %T, not a string", key, k, e)
					}
					out = append(out, Header{k, s})
				}
			default:
				return fmt.Errorf("result.%s[%q] is %T, not a string", key, k, v)
			}
		}
		return nil
	}
	switch x := raw.(type) {
	case map[string]any:
		if err := add(x); err != nil {
			return nil, err
		}
	case []any:
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("result.%s holds a %T, not an object", key, e)
			}
			if err := add(m); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("result.%s is %T, not an object", key, raw)
	}
	return out, nil
}

// parseDecision checks gdprgate's decision object. allow, status, reason
// and visible_mask are required; message and headers may be omitted.
func parseDecision(obj map[string]any) (Decision, error) {
	var d Decision
	var ok bool
	if d.Allow, ok = obj["allow"].(bool); !ok {
		return Decision{}, errors.New("decision.allow is not a boolean")
	}
	status, err := number(obj, "status", true, 100, 599)
	if err != nil {
		return Decision{}, err
	}
	d.Status = int(status)
	if !d.Allow && d.Status < 400 {
		return Decision{}, fmt.Errorf("decision denies with status %d", d.Status)
	}
	if d.Reason, ok = obj["reason"].(string); !ok || d.Reason == "" {
		return Decision{}, errors.New("decision.reason is not a non-empty string")
	}
	if m, present := obj["message"]; present {
		if d.Message, ok = m.(string); !ok {
			return Decision{}, errors.New("decision.message is not a string")
		}
	}
	mask, err := number(obj, "visible_mask", true, 0, math.MaxUint32)
	if err != nil {
		return Decision{}, err
	}
	d.VisibleMask = uint32(mask)
	denied, err := number(obj, "denied_mask", false, 0, math.MaxUint32)
	if err != nil {
		return Decision{}, err
	}
	d.DeniedMask = uint32(denied)
	for key, dst := range map[string]*bool{"record_evidence": &d.RecordEvidence, "renew_explicit": &d.RenewExplicit} {
		if v, present := obj[key]; present {
			if *dst, ok = v.(bool); !ok {
				return Decision{}, fmt.Errorf("decision.%s is not a boolean", key)
			}
		}
	}
	if h, present := obj["headers"]; present {
		hm, ok := h.(map[string]any)
		if !ok {
			return Decision{}, errors.New("decision.headers is not an object")
		}
		if len(hm) > 0 {
			d.Headers = make(map[string]string, len(hm))
			for k, hv := range hm {
				s, ok := hv.(string)
				if !ok {
					return Decision{}, fmt.Errorf("decision.headers[%q] is not a string", k)
				}
				d.Headers[k] = s
			}
		}
	}
	return d, nil
}

func number(obj map[string]any, key string, required bool, lo, hi int64) (int64, error) {
	v, present := obj[key]
	if !present {
		if required {
			return 0, fmt.Errorf("decision.%s is missing", key)
		}
		return 0, nil
	}
	var n int64
	switch x := v.(type) {
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			return 0, fmt.Errorf("decision.%s is not an integer: %s", key, x)
		}
		n = i
	case int:
		n = int64(x)
	case int64:
		n = x
	case float64:
		if x != math.Trunc(x) {
			return 0, fmt.Errorf("decision.%s is not an integer: %v", key, x)
		}
		n = int64(x)
	default:
		return 0, fmt.Errorf("decision.%s is not a number", key)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("decision.%s %d out of range [%d, %d]", key, n, lo, hi)
	}
	return n, nil
}
