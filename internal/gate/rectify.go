package gate

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// The rectification audit records which mapped fields a write changed —
// names only, never values — and who changed them (the CRM article's change
// tracking). The request decision reads the fields from the body; the entry
// is written when the backend has answered, and only if it took the change:
// a write it refused changed nothing. The front-end that sees the answer
// calls Responded: the proxy, and for Envoy the ext_proc stream, which gets
// the pending entry from ext_authz through Envoy's dynamic metadata. The
// HTTP authz mode never sees the answer; there the entry is written at the
// decision, before the write can happen, as it always was.
//
// Nothing accepted is lost: once the backend took a change, its entry must
// reach the audit trail even if the store is unreachable at that moment. It
// is tried at once; on failure it is logged whole at warning level (a crash
// after that loses nothing the logs keep) and retried in the background with
// backoff for up to Options.RectifyRetryFor (default 10 minutes, at most
// 10,000 waiting). An entry given up on, or still waiting when gdprgate
// stops, is logged at error level with everything needed to replay it and
// counted in gdprgate_rectification_audit_total{result="lost"}. The entries
// hold no personal data in clear (the subject is a keyed hash, fields are
// names), and the log carries the actor as a keyed hash too.

// Rectification is an allowed write's pending audit entry.
type Rectification struct {
	Route      string
	Actor      string
	Subject    string // keyed hash
	Fields     string // the route map's field paths, comma-separated, sorted
	DecisionID string
}

// rectifyMetadataKey is where ext_authz's dynamic metadata carries the
// pending entry.
const rectifyMetadataKey = "rectify"

// authzNamespace is Envoy's ext_authz filter's dynamic metadata namespace,
// which ext_proc forwards with metadata_options.forwarding_namespaces.
const authzNamespace = "envoy.filters.http.ext_authz"

const (
	// rectifyTimeout bounds the first, inline attempt (the answer waits).
	rectifyTimeout = 2 * time.Second
	// rectifyQueue bounds the entries waiting for a retry.
	rectifyQueue = 10000
	// defaultRectifyRetryFor is how long a waiting entry is retried.
	defaultRectifyRetryFor = 10 * time.Minute
)

// Rectification returns the audit entry the write awaits (nil: none).
func (ex *Exchange) Rectification() *Rectification {
	if ex == nil || !ex.Verdict.Allow {
		return nil
	}
	return ex.rect
}

// Metadata is the entry for ext_authz's dynamic metadata.
func (r *Rectification) Metadata() map[string]any {
	return map[string]any{"route": r.Route, "actor": r.Actor, "subject": r.Subject, "fields": r.Fields, "decision_id": r.DecisionID}
}

// MetadataStruct is Metadata as the Struct ext_authz's dynamic metadata
// carries.
func (r *Rectification) MetadataStruct() *structpb.Struct {
	str := structpb.NewStringValue
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"route": str(r.Route), "actor": str(r.Actor), "subject": str(r.Subject), "fields": str(r.Fields), "decision_id": str(r.DecisionID),
	}}
}

// rectificationFrom reads an entry from forwarded ext_authz metadata.
func rectificationFrom(ns *structpb.Struct) *Rectification {
	s := ns.GetFields()[rectifyMetadataKey].GetStructValue()
	if s == nil {
		return nil
	}
	get := func(k string) string { return s.GetFields()[k].GetStringValue() }
	r := &Rectification{Route: get("route"), Actor: get("actor"), Subject: get("subject"), Fields: get("fields"), DecisionID: get("decision_id")}
	if r.Fields == "" {
		return nil
	}
	return r
}

// rectifiedMethod reports whether a write with this method is audited as a
// rectification: the methods that change an existing resource.
func rectifiedMethod(m string) bool { return m == "PUT" || m == "PATCH" }

// newRectification builds the pending entry of an allowed write.
func (g *Gate) newRectification(ex *Exchange) *Rectification {
	actor := ex.caller.ID
	if actor == "" {
		actor = "roles:" + ex.caller.RoleKey()
	}
	r := &Rectification{Route: ex.route.cfg.Name, Actor: actor, Fields: strings.Join(ex.changed, ","), DecisionID: ex.DecisionID}
	if ex.hasSubj {
		r.Subject = g.hasher.Subject(ex.subject)
	}
	return r
}

// entry is the audit entry; status says what the backend answered.
func (r *Rectification) entry(at time.Time, status string) audit.Entry {
	return audit.Entry{
		Time: at, Actor: r.Actor, Action: "subject.rectify", Object: "routes/" + r.Route, Subject: r.Subject,
		Detail: map[string]string{"fields": r.Fields, "decision_id": r.DecisionID, "status": status},
	}
}

// Responded writes the exchange's pending rectification entry, if any, now
// that the backend answered with status; 0 means no answer came (the
// connection failed after the request may have been sent). A 2xx took the
// change. No answer, 502, 503 and 504 — what a proxy says when the backend
// failed, maybe after applying the write — are recorded with the status
// "unknown"; any other answer refused the change and writes nothing. It is
// safe to call for any exchange, and writes at most once.
func (g *Gate) Responded(ctx context.Context, ex *Exchange, status int) {
	r := ex.Rectification()
	if r == nil {
		return
	}
	ex.rect = nil
	outcome := strconv.Itoa(status)
	switch {
	case status >= 200 && status < 300:
	case status == 0, status == 502, status == 503, status == 504:
		outcome = "unknown"
		if status != 0 {
			outcome += " (" + strconv.Itoa(status) + ")"
		}
	default:
		g.metrics.rectify.WithLabelValues("not_applied").Inc()
		return
	}
	g.rectifier.write(ctx, r.entry(g.now(), outcome))
}

// rectifier writes rectification entries, retrying those the store refused.
type rectifier struct {
	g       *Gate
	retries *retryQueue[audit.Entry]
}

func newRectifier(g *Gate, retryFor time.Duration) *rectifier {
	q := &rectifier{g: g}
	q.retries = newRetryQueue(retryFor, rectifyQueue, q.append, func(e audit.Entry) {
		g.metrics.rectify.WithLabelValues("written_after_retry").Inc()
		g.log.Info("rectification audit entry written after a retry", "decision_id", e.Detail["decision_id"])
	}, q.lost)
	q.retries.pending = func(n int) { g.metrics.rectifyPending.Set(float64(n)) }
	return q
}

// write tries e once, inline, and queues it for retries on failure.
func (q *rectifier) write(ctx context.Context, e audit.Entry) {
	err := q.append(ctx, e)
	if err == nil {
		q.g.metrics.rectify.WithLabelValues("written").Inc()
		return
	}
	q.log(slog.LevelWarn, "rectification audit entry not written yet; retrying (the backend has the change)", e, err)
	q.retries.add(e)
}

func (q *rectifier) append(ctx context.Context, e audit.Entry) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rectifyTimeout)
	defer cancel()
	_, err := q.g.store.AppendAudit(ctx, e)
	return err
}

// lost records an entry gdprgate gives up on: the log line is the record.
func (q *rectifier) lost(e audit.Entry, why string) {
	q.g.metrics.rectify.WithLabelValues("lost").Inc()
	q.log(slog.LevelError, "rectification audit entry NOT written: replay it from this line", e, nil, "reason", why)
}

func (q *rectifier) log(level slog.Level, msg string, e audit.Entry, err error, extra ...any) {
	actor := e.Actor
	if !strings.HasPrefix(actor, "roles:") {
		// A caller id may name an employee: keep it out of the logs.
		actor = q.g.hasher.Subject(model.SubjectRef{Entity: "caller", ID: actor})
	}
	args := []any{"action", e.Action, "time", e.Time.UTC().Format(time.RFC3339Nano), "actor", actor,
		"object", e.Object, "subject", e.Subject, "fields", e.Detail["fields"], "status", e.Detail["status"],
		"decision_id", e.Detail["decision_id"]}
	if err != nil {
		args = append(args, "err", err)
	}
	q.g.log.Log(context.Background(), level, msg, append(args, extra...)...)
}

// Close writes the rectification entries still waiting for a retry, within
// ctx, and logs those it cannot (see the rectification audit above). Call
// it when gdprgate stops, after the front-ends.
func (g *Gate) Close(ctx context.Context) {
	g.rectifier.retries.close(ctx)
	g.commRetry.retries.close(ctx)
}
