package observe

import (
	"context"
	"regexp"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
	"github.com/open-policy-agent/opa/v1/server"
)

// Masked replaces what the decision log must not show in clear.
const Masked = "**REDACTED**"

// DecisionLog sends decisions, in OPA's event shape, through OPA's
// decision-log plugin (which batches, retries, size-limits, applies the
// policy's own system.log mask and drop rules, and prints or uploads
// them). Before that, gdprgate's privacy applies: the subject id is
// replaced by its keyed hash wherever it appears in the path or query,
// header values, bodies, Envoy metadata (a JWT payload) and the client
// address are masked.
type DecisionLog struct {
	plugin *logs.Plugin
	// path is the decision's OPA path ("envoy/authz/allow").
	path string
	// clearHeaders are header names whose values are logged in clear.
	clearHeaders map[string]bool
	bundles      func() map[string]string
}

// NewDecisionLog logs through plugin; path is the policy's entry point,
// clearHeaders the headers whose values may be logged, bundles the active
// bundles' revisions (nil: none).
func NewDecisionLog(plugin *logs.Plugin, path string, clearHeaders []string, bundles func() map[string]string) *DecisionLog {
	ch := make(map[string]bool, len(clearHeaders))
	for _, h := range clearHeaders {
		ch[strings.ToLower(h)] = true
	}
	return &DecisionLog{plugin: plugin, path: strings.Trim(path, "/"), clearHeaders: ch, bundles: bundles}
}

// Event is one decision to log.
type Event struct {
	DecisionID string
	// Input is the policy input as a JSON value (nil: none).
	Input map[string]any
	// Result is the policy's result as it returned it.
	Result any
	// SubjectID and SubjectHash: the raw id to find and the hash to put
	// in its place ("" when the request names no subject).
	SubjectID, SubjectHash string
	Metrics                metrics.Metrics
	// Custom is gdprgate's own part: stage, route, verdict, shadow.
	Custom map[string]any
}

// Log masks and hands the event to OPA's plugin. Errors are the plugin's
// to count and report; a decision is never refused for its log.
func (l *DecisionLog) Log(ctx context.Context, e Event) {
	info := &server.Info{
		DecisionID: e.DecisionID,
		Path:       l.path,
		Timestamp:  time.Now(),
		Metrics:    e.Metrics,
		Custom:     e.Custom,
	}
	info.TraceID, info.SpanID = IDs(ctx)
	if l.bundles != nil {
		if revs := l.bundles(); len(revs) > 0 {
			info.Bundles = make(map[string]server.BundleInfo, len(revs))
			for name, rev := range revs {
				info.Bundles[name] = server.BundleInfo{Revision: rev}
			}
		}
	}
	if e.Input != nil {
		l.mask(e.Input, e.SubjectID, e.SubjectHash)
		var in any = e.Input
		info.Input = &in
	}
	if e.Result != nil {
		res := e.Result
		info.Results = &res
	}
	_ = l.plugin.Log(context.WithoutCancel(ctx), info)
}

// mask applies gdprgate's privacy to an input in place.
func (l *DecisionLog) mask(in map[string]any, subject, hash string) {
	attrs, _ := in["attributes"].(map[string]any)
	if req, ok := attrs["request"].(map[string]any); ok {
		if h, ok := req["http"].(map[string]any); ok {
			if hs, ok := h["headers"].(map[string]any); ok {
				for k := range hs {
					if !l.clearHeaders[k] {
						hs[k] = Masked
					}
				}
			}
			for _, k := range []string{"body", "rawBody"} {
				if _, ok := h[k]; ok {
					h[k] = Masked
				}
			}
			if p, ok := h["path"].(string); ok && subject != "" {
				h["path"] = replaceSegment(p, subject, hash)
			}
		}
	}
	if md, ok := attrs["metadataContext"].(map[string]any); ok {
		if fm, ok := md["filterMetadata"].(map[string]any); ok {
			for ns := range fm {
				fm[ns] = Masked
			}
		}
	}
	if src, ok := attrs["source"].(map[string]any); ok {
		if a, ok := src["address"].(map[string]any); ok {
			if sa, ok := a["socketAddress"].(map[string]any); ok {
				if _, ok := sa["address"]; ok {
					sa["address"] = Masked
				}
			}
		}
	}
	if in["parsed_body"] != nil {
		in["parsed_body"] = Masked
	}
	if subject == "" {
		return
	}
	if pp, ok := in["parsed_path"].([]any); ok {
		for i, s := range pp {
			if s == subject {
				pp[i] = hash
			}
		}
	}
	if pq, ok := in["parsed_query"].(map[string]any); ok {
		for _, vs := range pq {
			if list, ok := vs.([]any); ok {
				for i, v := range list {
					if v == subject {
						list[i] = hash
					}
				}
			}
		}
	}
}

// replaceSegment replaces the subject where it is a whole path segment or
// query value of p (raw or percent-encoded as the client may have sent it).
func replaceSegment(p, subject, hash string) string {
	re := regexp.MustCompile(`(^|[/=?&])` + regexp.QuoteMeta(subject) + `($|[/?&#;])`)
	return re.ReplaceAllString(p, "${1}"+hash+"${2}")
}
