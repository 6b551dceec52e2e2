package forget

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Step is one backend call of a deletion: a wipe plan's, an erasure's or a
// purge's.
type Step struct {
	Name   string `json:"name" yaml:"name"`
	Method string `json:"method" yaml:"method"`
	// Path is a template relative to the backend's base URL; "{id}" is
	// replaced by the subject's id, escaped for where it stands (path
	// segment before '?', query value after it).
	Path string `json:"path" yaml:"path"`
	// Issue marks a step deleting issues: held while
	// config.suspend_wipe_issue is set.
	Issue bool `json:"issue,omitempty" yaml:"issue,omitempty"`
	// Body is a JSON body template: "{id}" inside its strings becomes the
	// subject id (JSON-escaped). Empty: no body.
	Body json.RawMessage `json:"body,omitempty" yaml:"-"`
}

// Plan maps an entity ("contact") to the steps that delete one of them with
// everything related, in order (WipeCtcAll).
type Plan map[string][]Step

// Erasures maps an entity and a sensitivity id to the steps that delete that
// sensitivity's data of one subject (erasure.steps.<entity>.<sensitivity>).
type Erasures map[string]map[string][]Step

// Plans is every deletion gdprgate knows how to execute.
type Plans struct {
	Wipe  Plan
	Erase Erasures
	// Comm deletes one proof communication ("{id}" = its id).
	Comm []Step
}

// PlansFromConfig builds the plans from the configuration (validated).
func PlansFromConfig(cfg *config.Config) (Plans, error) {
	p := Plans{Wipe: Plan{}, Erase: Erasures{}}
	conv := func(steps []config.WipeStep) ([]Step, error) {
		out := make([]Step, len(steps))
		for i, s := range steps {
			st := Step{Name: s.Name, Method: strings.ToUpper(s.Method), Path: s.Path, Issue: s.Issue}
			if s.Body != nil {
				b, err := config.StepBody(s.Body)
				if err != nil {
					return nil, fmt.Errorf("step %q: %w", s.Name, err)
				}
				st.Body = b
			}
			out[i] = st
		}
		return out, nil
	}
	for entity, steps := range cfg.Wipes.Steps {
		s, err := conv(steps)
		if err != nil {
			return Plans{}, fmt.Errorf("wipes.steps.%s: %w", entity, err)
		}
		p.Wipe[entity] = s
	}
	comm, err := conv(cfg.Erasure.Communications)
	if err != nil {
		return Plans{}, fmt.Errorf("erasure.communications: %w", err)
	}
	p.Comm = comm
	for entity, bySens := range cfg.Erasure.Steps {
		p.Erase[entity] = map[string][]Step{}
		for sens, steps := range bySens {
			s, err := conv(steps)
			if err != nil {
				return Plans{}, fmt.Errorf("erasure.steps.%s.%s: %w", entity, sens, err)
			}
			p.Erase[entity][sens] = s
		}
	}
	return p, nil
}

// Expand returns the step's path for subject id, with the id escaped.
func (s Step) Expand(id string) string {
	p, q, hasQuery := strings.Cut(s.Path, "?")
	p = strings.ReplaceAll(p, "{id}", url.PathEscape(id))
	if !hasQuery {
		return p
	}
	return p + "?" + strings.ReplaceAll(q, "{id}", url.QueryEscape(id))
}

// ExpandBody returns the step's body for subject id: the template with
// "{id}" replaced inside JSON strings by the id, escaped so that the body
// stays valid JSON whatever the id holds.
func (s Step) ExpandBody(id string) string {
	if len(s.Body) == 0 {
		return ""
	}
	q, _ := json.Marshal(id)
	return strings.ReplaceAll(string(s.Body), "{id}", string(q[1:len(q)-1]))
}

func (s Step) record(id string) cache.WipeStep {
	m := s.Method
	if m == "" {
		m = http.MethodDelete
	}
	return cache.WipeStep{Name: s.Name, Method: strings.ToUpper(m), Path: s.Expand(id), Body: s.ExpandBody(id), Issue: s.Issue, Status: StepPending}
}

// Steps returns the pending steps for ref under plan, as stored in a wipe
// record; nil when the plan has no entry for ref.Entity.
func Steps(plan Plan, ref model.SubjectRef) []cache.WipeStep {
	steps, ok := plan[ref.Entity]
	if !ok {
		return nil
	}
	out := make([]cache.WipeStep, len(steps))
	for i, s := range steps {
		out[i] = s.record(ref.ID)
	}
	return out
}

// EraseSteps returns the steps erasing the bits of mask for ref, in bit
// order, and the bits of mask no step is configured for (not executable).
func (p Plans) EraseSteps(ix *model.Index, ref model.SubjectRef, mask uint32) (steps []cache.WipeStep, erased, missing uint32) {
	bySens := p.Erase[ref.Entity]
	for b := 0; b <= model.MaxBit; b++ {
		m := uint32(1) << uint(b)
		if mask&m == 0 {
			continue
		}
		sens := ix.ByBit[b]
		if sens == nil {
			continue
		}
		ss, ok := bySens[sens.ID]
		if !ok || len(ss) == 0 {
			missing |= m
			continue
		}
		erased |= m
		for _, s := range ss {
			st := s.record(ref.ID)
			st.Name = sens.ID + ":" + s.Name
			steps = append(steps, st)
		}
	}
	return steps, erased, missing
}

// Sensitivities names the bits of mask by sensitivity id, in bit order.
func Sensitivities(ix *model.Index, mask uint32) []string {
	var out []string
	for b := 0; b <= model.MaxBit; b++ {
		if mask&(1<<uint(b)) != 0 {
			if s := ix.ByBit[b]; s != nil {
				out = append(out, s.ID)
			} else {
				out = append(out, fmt.Sprint(b))
			}
		}
	}
	return out
}
