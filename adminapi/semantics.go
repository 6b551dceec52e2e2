package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
	"github.com/gdprgate/gdprgate/policy/rules"
)

// handleEvidenceRenew is the manual's explicit renewal, RenewalType
// "Explicit - Manual (if the agent has rights)": the right is the token's
// gdpr_permission scope. It moves the evidence's origin to now (renewed_at)
// and is audited. Only evidence of an explicit purpose, under a legalisation
// that is not retired, and still granting something (active or archived)
// is renewed: a lapsed consent is not brought back by a renewal.
func (s *Server) handleEvidenceRenew(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ref := model.SubjectRef{Entity: r.PathValue("entity"), ID: r.PathValue("id")}
	id := r.PathValue("evidence_id")
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	rec, err := s.o.Store.Subject(ctx, ref)
	if err != nil {
		s.storeFailed(w, r, "read subject", err)
		return
	}
	var ev *model.Evidence
	for i := range rec.Evidence {
		if rec.Evidence[i].ID == id {
			ev = &rec.Evidence[i]
		}
	}
	if ev == nil {
		writeError(w, http.StatusNotFound, "not_found", "the subject has no evidence with id "+strconv.Quote(id))
		return
	}
	now := s.o.Clock()
	leg := ix.Legalisations[ev.LegalisationID]
	var pur *model.Purpose
	if leg != nil {
		pur = ix.Purposes[leg.PurposeID]
	}
	switch {
	case pur == nil:
		writeValidation(w, []model.FieldError{{Field: "legalisation_id", Reason: fmt.Sprintf("legalisation %q is not in the registers", ev.LegalisationID)}})
		return
	case pur.RenewalType != model.RenewalExplicit:
		writeValidation(w, []model.FieldError{{Field: "renewal_type", Reason: fmt.Sprintf("purpose %q renews %q: only purposes with renewal_type explicit are renewed by hand", pur.ID, renewalName(pur.RenewalType))}})
		return
	case leg.StatusAt(now) == model.StatusRetired:
		writeValidation(w, []model.FieldError{{Field: "legalisation_id", Reason: fmt.Sprintf("legalisation %q is retired: its evidence is not extended", leg.ID)}})
		return
	}
	st := lifecycle.Evaluate(lifecycle.Input{Index: ix, Origin: rec.Subject.Origin, Evidence: []model.Evidence{*ev}}, now)
	if st.CoveredExplicit == 0 {
		writeError(w, http.StatusConflict, "evidence_lapsed", "the evidence grants nothing any more (expired or forgotten): record new evidence instead")
		return
	}
	entry := audit.Entry{
		Time: now.UTC(), Actor: actor(ctx), Action: "evidence.renew", Object: "evidence/" + id,
		Subject: s.o.Hasher.Subject(ref), Detail: map[string]string{"renewal": string(model.RenewalExplicit)},
	}
	renewed, err := s.o.Store.RenewEvidence(ctx, ref, []string{id}, now, entry)
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			writeError(w, http.StatusNotFound, "not_found", "the subject has no evidence with id "+strconv.Quote(id))
			return
		}
		s.storeFailed(w, r, "renew evidence", err)
		return
	}
	writeJSON(w, http.StatusOK, renewed[0])
}

func renewalName(t model.RenewalType) string {
	if t == "" {
		return string(model.RenewalNone)
	}
	return string(t)
}

// commAttributes is a communication as the rules table sees it (the dry
// run's request): the manual's rule conditions, and a reference when the
// route map gives one.
type commAttributes struct {
	Channel        string `json:"channel,omitempty"`
	ProjectID      string `json:"project_id,omitempty"`
	LanguageID     string `json:"language_id,omitempty"`
	PhonebookID    string `json:"phonebook_id,omitempty"`
	OutboundListID string `json:"outbound_list_id,omitempty"`
	TopicID        string `json:"topic_id,omitempty"`
	SubtopicID     string `json:"subtopic_id,omitempty"`
	Reference      string `json:"reference,omitempty"`
}

type ruleHit struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	Rank           int     `json:"rank"`
	SensitivityID  string  `json:"sensitivity_id"`
	LegalisationID *string `json:"legalisation_id"`
	Terminate      bool    `json:"terminate"`
}

type evidencePlan struct {
	LegalisationID string                   `json:"legalisation_id"`
	Status         model.LegalisationStatus `json:"status"`
	// Recorded: a communication would record this evidence (for a caller
	// the policy lets record evidence); otherwise Problems says why not.
	Recorded bool               `json:"recorded"`
	Problems []model.FieldError `json:"problems,omitempty"`
}

type rulesDryRun struct {
	Matched []ruleHit `json:"matched"`
	// Sensitivity is the communication's sensitivity mask; Default says
	// it is the registers' default_sensitivity (no rule matched).
	Sensitivity   uint32         `json:"sensitivity"`
	Sensitivities []string       `json:"sensitivities"`
	Default       bool           `json:"default_sensitivity"`
	Evidence      []evidencePlan `json:"evidence"`
	At            time.Time      `json:"at"`
}

// handleRulesEvaluate says which rules a communication would hit, what
// sensitivity it gets and which evidence it would record — the rules table
// as gdprgate evaluates it on communication routes, without a
// communication.
func (s *Server) handleRulesEvaluate(w http.ResponseWriter, r *http.Request) {
	var in commAttributes
	if err := decodeBody(w, r, s.o.MaxBodyBytes, &in); err != nil {
		return
	}
	ix, err := s.o.Store.Registers(r.Context())
	if err != nil {
		s.storeFailed(w, r, "read registers", err)
		return
	}
	now := s.o.Clock().UTC()
	res := rules.Evaluate(ix, rules.Communication{
		Channel: in.Channel, ProjectID: in.ProjectID, LanguageID: in.LanguageID, PhonebookID: in.PhonebookID,
		OutboundListID: in.OutboundListID, TopicID: in.TopicID, SubtopicID: in.SubtopicID,
	})
	out := rulesDryRun{Matched: []ruleHit{}, Sensitivity: res.Sensitivity, Sensitivities: []string{}, Evidence: []evidencePlan{}, At: now}
	for _, id := range res.Matched {
		for _, ru := range ix.RulesByRank {
			if ru.ID == id {
				out.Matched = append(out.Matched, ruleHit{ru.ID, ru.Name, ru.Rank, ru.SensitivityID, ru.LegalisationID, ru.Terminate})
			}
		}
	}
	if len(res.Matched) == 0 {
		out.Default, out.Sensitivity = true, ix.Registers.Config.DefaultSensitivity
	}
	for b := 0; b <= model.MaxBit; b++ {
		if sens := ix.ByBit[b]; sens != nil && out.Sensitivity&sens.Mask() != 0 {
			out.Sensitivities = append(out.Sensitivities, sens.ID)
		}
	}
	for _, leg := range res.Legalisations {
		l := ix.Legalisations[leg]
		plan := evidencePlan{LegalisationID: leg}
		if l != nil {
			plan.Status = l.StatusAt(now)
		}
		// The evidence a communication records: the communication's
		// record, the contact, now.
		ev := model.Evidence{
			Subject: model.SubjectRef{Entity: "contact", ID: "dry-run"}, LegalisationID: leg,
			CommIDs: []string{"dry-run"}, ContactID: "dry-run", ProjectID: in.ProjectID, Reference: in.Reference,
			Origin: now, CreatedAt: now,
		}
		if err := ix.ValidateEvidence(&ev); err != nil {
			var ve *model.ValidationError
			if errors.As(err, &ve) {
				plan.Problems = ve.Errors
			} else {
				plan.Problems = []model.FieldError{{Reason: err.Error()}}
			}
		} else {
			plan.Recorded = true
		}
		out.Evidence = append(out.Evidence, plan)
	}
	writeJSON(w, http.StatusOK, out)
}
