package gate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/canon"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
	"github.com/gdprgate/gdprgate/policy/rules"
	"github.com/gdprgate/gdprgate/redact"
)

// A communication route is the manual's "Authorization" button without a
// line of backend code: a request creating a communication record (an
// inbound or outbound call, a message, a chat) is matched against the
// registers' rules table by the conditions the route map reads from the
// request; the matching rules give the communication's sensitivity and the
// legalisations whose evidence gdprgate records for the subject once the
// backend answered 2xx (with the new record's id as comm_ids), and the
// communication renews the subject's evidence of self-extending purposes.

// commPlan is what the request decision knows of a communication; the
// response stage carries it out.
type commPlan struct {
	// subject is the route's subject (the communication's contact).
	subject model.SubjectRef
	// phone is the communication's phone number ("" when not mapped).
	phone string
	// id is the record's id when the request names it; else it is read
	// from the backend's answer.
	id        string
	reference string
	attrs     rules.Communication
	result    rules.Result
	// defaulted: no rule matched, the sensitivity is the registers'
	// default_sensitivity.
	defaulted   bool
	sensitivity uint32
	// renewal: the record is marked as a renewal (IsRenewal).
	renewal bool
	// record and renewExplicit are the policy's record_evidence and
	// renew_explicit.
	record, renewExplicit bool
}

// commValues lists a communication spec's value specs that are set.
func commValues(c *config.CommunicationSpec) map[string]*config.ValueSpec {
	all := map[string]*config.ValueSpec{
		"id": c.ID, "phone": c.Phone, "reference": c.Reference, "renewal": c.Renewal,
	}
	for k, v := range c.Conditions() {
		all[k] = v
	}
	for k, v := range all {
		if v == nil {
			delete(all, k)
		}
	}
	return all
}

// planCommunication reads a communication's values from the request and
// evaluates the rules table on them.
func (g *Gate) planCommunication(ix *model.Index, r *route, rd *reading, req *Request, param string, body []canon.Field, ex *Exchange) (*commPlan, error) {
	c := r.cfg.Communication
	p := &commPlan{subject: ex.subject}
	read := func(key string, v *config.ValueSpec) (string, error) {
		if v == nil {
			return "", nil
		}
		raw, err := g.requestValue(r, rd, req, param, body, key, v)
		if err != nil || raw == "" {
			return "", err
		}
		if len(v.Values) > 0 {
			return v.Values[raw], nil // a value the map does not name is unknown
		}
		return raw, nil
	}
	var err error
	fields := []struct {
		key string
		v   *config.ValueSpec
		dst *string
	}{
		{"phone", c.Phone, &p.phone}, {"reference", c.Reference, &p.reference},
		{"channel", c.Channel, &p.attrs.Channel}, {"project_id", c.ProjectID, &p.attrs.ProjectID},
		{"language_id", c.LanguageID, &p.attrs.LanguageID}, {"phonebook_id", c.PhonebookID, &p.attrs.PhonebookID},
		{"outbound_list_id", c.OutboundListID, &p.attrs.OutboundListID}, {"topic_id", c.TopicID, &p.attrs.TopicID},
		{"subtopic_id", c.SubtopicID, &p.attrs.SubtopicID},
	}
	for _, f := range fields {
		if *f.dst, err = read(f.key, f.v); err != nil {
			return nil, err
		}
	}
	if c.ID != nil && c.ID.From != config.FromResponseBody {
		if p.id, err = read("id", c.ID); err != nil {
			return nil, err
		}
	}
	flag, err := read("renewal", c.Renewal)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(flag) {
	case "true", "1", "yes":
		p.renewal = true
	}
	p.result = rules.Evaluate(ix, p.attrs)
	p.sensitivity = p.result.Sensitivity
	if len(p.result.Matched) == 0 {
		// The manual's GdprDefaultSensitivity: "used as a default
		// sensitivity for a new call before the agent sets a specific
		// sensitivity".
		p.defaulted = true
		p.sensitivity = ix.Registers.Config.DefaultSensitivity
	}
	return p, nil
}

// requestValue reads one value of the request: a constant, a path or query
// parameter, a header, or a JSON body field (a string, a number, or
// true/false).
func (g *Gate) requestValue(r *route, rd *reading, req *Request, param string, body []canon.Field, key string, v *config.ValueSpec) (string, error) {
	if v.Value != "" {
		return v.Value, nil
	}
	switch v.From {
	case config.FromBody:
		i, ok := r.commBody[key]
		if !ok || i >= len(body) || !body[i].Found {
			return "", nil
		}
		f := body[i]
		switch {
		case f.Kind == canon.KindString, f.Kind == canon.KindNumber, f.Value == "true", f.Value == "false":
			return f.Value, nil
		case f.Value == "null":
			return "", nil
		}
		return "", &canon.Error{Reason: "communication_value_invalid", Message: "the request body's " + key + " must be a string, a number or a boolean"}
	case config.FromQuery:
		s, _, err := canon.Query(rd.target.RawQuery, v.Name)
		return s, err
	case config.FromHeader:
		return canon.Header(req.Header(strings.ToLower(v.Name)), v.Name)
	case config.FromPath:
		if r.cfg.Subject != nil && r.cfg.Subject.From == config.FromPath && r.cfg.Subject.Name == v.Name {
			return param, nil
		}
		return r.pathParam(rd.target.Path, v.Name), nil
	}
	return "", nil
}

// recordCommunication carries out a communication's plan once the backend
// answered: evidence of the rules' legalisations for the subject, with the
// new record as its communication, and the renewals the communication
// makes. It returns the response headers that say what happened. Nothing
// is recorded unless the backend answered 2xx.
func (g *Gate) recordCommunication(ctx context.Context, ex *Exchange, resp *Response) map[string]string {
	p := ex.comm
	if p == nil || resp.Status < 200 || resp.Status > 299 {
		return nil
	}
	out := map[string]string{}
	id := p.id
	if ex.route.commIDPath != nil {
		id = g.responseID(ex.route, resp)
	}
	ix, err := g.store.Registers(ctx)
	if err != nil {
		g.commFailed(ex, "registers", err, out)
		return out
	}
	now := g.now().UTC()
	subject, contact, err := evidenceSubject(ix, p)
	if err != nil {
		out[HeaderEvidence] = "none"
		out[HeaderEvidenceRefused] = "*:" + err.Error()
		return out
	}
	actor := ex.caller.ID
	if actor == "" {
		actor = "roles:" + ex.caller.RoleKey()
	}
	var created []model.Evidence
	var refused []string
	for _, leg := range p.result.Legalisations {
		if !p.record {
			refused = append(refused, leg+":not_permitted")
			g.metrics.commEvidence.WithLabelValues("not_permitted").Inc()
			continue
		}
		if id == "" {
			refused = append(refused, leg+":comm_ids")
			g.metrics.commEvidence.WithLabelValues("refused").Inc()
			continue
		}
		ev := model.Evidence{
			ID:      commEvidenceID(ex.route.cfg.Name, id, leg, subject),
			Subject: subject, LegalisationID: leg, CommIDs: []string{id}, ContactID: contact,
			ProjectID: p.attrs.ProjectID, Reference: p.reference,
			Origin: now, CreatedAt: now, CreatedBy: actor,
		}
		if err := ix.ValidateEvidence(&ev); err != nil {
			refused = append(refused, leg+":"+refusedFields(err))
			g.metrics.commEvidence.WithLabelValues("refused").Inc()
			continue
		}
		created = append(created, ev)
	}
	ids := make([]string, 0, len(created))
	if len(created) > 0 {
		entry := audit.Entry{
			Time: now, Actor: actor, Action: "evidence.communication", Object: "routes/" + ex.route.cfg.Name,
			Subject: g.hasher.Subject(subject),
			Detail: map[string]string{
				"rules": strings.Join(p.result.Matched, ","), "legalisations": strings.Join(p.result.Legalisations, ","),
				"comm_sensitivity": strconv.FormatUint(uint64(p.sensitivity), 10), "decision_id": ex.DecisionID,
			},
		}
		stored, ok := g.commRetry.put(ctx, created, entry)
		if !ok {
			// Queued for retries (or logged as lost): the header says it
			// is not recorded yet.
			g.metrics.storeErrors.Inc()
			out[HeaderEvidence] = "pending"
			return out
		}
		for _, ev := range stored {
			ids = append(ids, ev.ID)
		}
	}
	if len(ids) > 0 {
		out[HeaderEvidence] = strings.Join(ids, ",")
	} else {
		out[HeaderEvidence] = "none"
	}
	if len(refused) > 0 {
		out[HeaderEvidenceRefused] = strings.Join(refused, ",")
		g.log.Info("communication: evidence not recorded", "decision_id", ex.DecisionID, "route", ex.route.cfg.Name, "refused", out[HeaderEvidenceRefused])
	}
	if renewed := g.renewByCommunication(ctx, ex, ix, subject, ids, now); len(renewed) > 0 {
		out[HeaderRenewed] = strings.Join(renewed, ",")
	}
	return out
}

// commFailed reports a communication whose evidence could not be recorded
// because the store failed: the backend already recorded the
// communication, so the answer stands; the header and the log say so.
func (g *Gate) commFailed(ex *Exchange, what string, err error, out map[string]string) {
	g.metrics.storeErrors.Inc()
	g.metrics.commEvidence.WithLabelValues("lost").Add(float64(len(ex.comm.result.Legalisations)))
	g.log.Error("communication: evidence not recorded", "decision_id", ex.DecisionID, "route", ex.route.cfg.Name, "step", what, "err", err)
	out[HeaderEvidence] = "failed"
}

// evidenceSubject is the subject the communication's evidence is for: the
// registers' identity entity (the manual's GdprIdentityEntity: "If the
// customer uses contacts, enter Contact, otherwise PhoneNumber"), and the
// contact the evidence names (the manual's ContentContactIdObligatory).
func evidenceSubject(ix *model.Index, p *commPlan) (model.SubjectRef, string, error) {
	identity := ix.Registers.Config.IdentityEntity
	if identity == "" {
		identity = "contact"
	}
	contact := ""
	if p.subject.Entity == "contact" {
		contact = p.subject.ID
	}
	switch {
	case p.subject.Entity == identity:
		return p.subject, contact, nil
	case identity == "phone_number" && p.phone != "":
		return model.SubjectRef{Entity: "phone_number", ID: p.phone}, contact, nil
	}
	return model.SubjectRef{}, "", fmt.Errorf("identity_%s", identity)
}

// commEvidenceID names the evidence a communication records by what it is
// (route, record, legalisation, subject), so that an answer processed
// twice records it once.
func commEvidenceID(route, commID, leg string, subject model.SubjectRef) string {
	h := sha256.New()
	for _, s := range []string{route, commID, leg, subject.Entity, subject.ID} {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	return "ev-m" + hex.EncodeToString(h.Sum(nil)[:12])
}

// refusedFields names the evidence fields a validation refused.
func refusedFields(err error) string {
	var ve *model.ValidationError
	if !errors.As(err, &ve) {
		return "invalid"
	}
	var names []string
	for _, fe := range ve.Errors {
		names = append(names, fe.Field)
	}
	sort.Strings(names)
	return strings.Join(names, "+")
}

// responseID reads the communication record's id from the backend's JSON
// answer ("" when it is not there).
func (g *Gate) responseID(r *route, resp *Response) string {
	body := resp.Body
	enc := strings.TrimSpace(strings.ToLower(resp.Header("content-encoding")))
	if enc != "" && enc != "identity" {
		dec, err := redact.Decode(enc, body, g.cfg.Body.MaxBytes)
		if err != nil {
			return ""
		}
		body = dec
	}
	f, err := canon.BodyFields(body, [][]string{r.commIDPath})
	if err != nil || !f[0].Found {
		return ""
	}
	if f[0].Kind == canon.KindString || f[0].Kind == canon.KindNumber && isInteger(f[0].Value) {
		return f[0].Value
	}
	return ""
}

// renewByCommunication renews the subject's evidence the communication
// renews (the manual's RenewalType: "Implicit - When every IC / OC / M /
// CH record is marked as IsRenewal, Auto - When every IC / OC / M / CH
// communication record is acquired"; "Explicit - Manual (if the agent has
// rights)": a record marked as a renewal by a caller the policy allows).
// Only evidence that grants something now is renewed — expired or
// forgotten evidence is not brought back — and never under a retired
// legalisation. The renewal moves the evidence's origin to now and is
// audited.
func (g *Gate) renewByCommunication(ctx context.Context, ex *Exchange, ix *model.Index, subject model.SubjectRef, skip []string, now time.Time) []string {
	p := ex.comm
	auto := ex.route.cfg.Communication.AutoRenewal
	if !auto && !p.renewal {
		return nil
	}
	rec, err := g.store.Subject(ctx, subject)
	if err != nil {
		g.log.Error("communication: renewal not made", "decision_id", ex.DecisionID, "err", err)
		return nil
	}
	var ids, types []string
	for _, ev := range rec.Evidence {
		if contains(skip, ev.ID) {
			continue
		}
		leg := ix.Legalisations[ev.LegalisationID]
		if leg == nil || leg.StatusAt(now) == model.StatusRetired {
			continue
		}
		pur := ix.Purposes[leg.PurposeID]
		if pur == nil {
			continue
		}
		kind := pur.RenewalType
		switch {
		case kind == model.RenewalAuto && auto:
		case kind == model.RenewalImplicit && p.renewal:
		case kind == model.RenewalExplicit && p.renewal && p.renewExplicit:
		default:
			continue
		}
		st := lifecycle.Evaluate(lifecycle.Input{Index: ix, Origin: rec.Subject.Origin, Evidence: []model.Evidence{ev}}, now)
		if st.CoveredExplicit == 0 {
			continue // lapsed: a renewal does not bring it back
		}
		ids = append(ids, ev.ID)
		if !contains(types, string(kind)) {
			types = append(types, string(kind))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	actor := ex.caller.ID
	if actor == "" {
		actor = "roles:" + ex.caller.RoleKey()
	}
	entry := audit.Entry{
		Time: now, Actor: actor, Action: "evidence.renew", Object: "routes/" + ex.route.cfg.Name,
		Subject: g.hasher.Subject(subject),
		Detail:  map[string]string{"evidence": strings.Join(ids, ","), "renewal": strings.Join(types, ","), "decision_id": ex.DecisionID},
	}
	renewed, err := g.store.RenewEvidence(ctx, subject, ids, now, entry)
	if err != nil {
		g.metrics.storeErrors.Inc()
		g.log.Error("communication: renewal not made", "decision_id", ex.DecisionID, "err", err)
		return nil
	}
	out := make([]string, len(renewed))
	for i, ev := range renewed {
		out[i] = ev.ID
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
