package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"
)

// Seed is a registers file: the registers plus subjects and evidence to load
// into an empty store. The demo, the tests and `--seed` use it.
type Seed struct {
	Registers
	Subjects []Subject  `json:"subjects,omitempty"`
	Evidence []Evidence `json:"evidence,omitempty"`
}

// relTime matches times written relative to load time: "now", "now-100d",
// "now+30d", "now-1d12h" (units d, h, m, s; one sign for the whole offset).
var relTime = regexp.MustCompile(`^now(?:([+-])((?:\d{1,6}[dhms])+))?$`)
var relPart = regexp.MustCompile(`(\d+)([dhms])`)

// ResolveTime parses a relative time expression ("now-100d") against now.
// ok is false when s is not a relative expression.
func ResolveTime(s string, now time.Time) (t time.Time, ok bool) {
	m := relTime.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, false
	}
	var d time.Duration
	for _, p := range relPart.FindAllStringSubmatch(m[2], -1) {
		n, err := strconv.Atoi(p[1])
		if err != nil {
			return time.Time{}, false
		}
		unit := map[string]time.Duration{"d": 24 * time.Hour, "h": time.Hour, "m": time.Minute, "s": time.Second}[p[2]]
		d += time.Duration(n) * unit
	}
	if m[1] == "-" {
		d = -d
	}
	return now.Add(d).UTC(), true
}

// resolveRelative rewrites every string value of a decoded JSON tree that is a
// relative time into RFC 3339, and every "YYYY-MM-DD" date into midnight UTC.
func resolveRelative(v any, now time.Time) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = resolveRelative(e, now)
		}
	case []any:
		for i, e := range x {
			x[i] = resolveRelative(e, now)
		}
	case string:
		if t, ok := ResolveTime(x, now); ok {
			return t.Format(time.RFC3339Nano)
		}
		if d, err := time.Parse("2006-01-02", x); err == nil {
			return d.Format(time.RFC3339)
		}
	}
	return v
}

// DecodeStrict decodes YAML or JSON into out, rejecting unknown fields, after
// resolving relative times ("now-100d") against now.
func DecodeStrict(data []byte, now time.Time, out any) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	var tree any
	if err := json.Unmarshal(js, &tree); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	tree = resolveRelative(tree, now)
	js, err = json.Marshal(tree)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// ParseSeed decodes and validates a registers file. Every validation problem
// is reported, registers and evidence alike (evidence fields are prefixed
// "evidence[i]."). Times may be absolute (RFC 3339 or YYYY-MM-DD) or relative
// to now ("now-100d").
func ParseSeed(data []byte, now time.Time) (*Seed, error) {
	var s Seed
	if err := DecodeStrict(data, now, &s); err != nil {
		return nil, err
	}
	if s.Config.IdentityEntity == "" {
		s.Config.IdentityEntity = "contact"
	}
	var all errs
	if err := s.Registers.Validate(); err != nil {
		all.list = append(all.list, err.(*ValidationError).Errors...)
		return nil, all.err()
	}
	ix, _ := NewIndex(&s.Registers, 0)
	seenEv := map[string]bool{}
	for i := range s.Evidence {
		ev := &s.Evidence[i]
		if ev.ID == "" {
			ev.ID = fmt.Sprintf("ev-%d", i+1)
		}
		if ev.CreatedAt.IsZero() {
			ev.CreatedAt = now.UTC()
		}
		if seenEv[ev.ID] {
			all.add(fmt.Sprintf("evidence[%d].id", i), "duplicate id %q", ev.ID)
		}
		seenEv[ev.ID] = true
		if err := ix.ValidateEvidence(ev); err != nil {
			for _, fe := range err.(*ValidationError).Errors {
				all.add(fmt.Sprintf("evidence[%d].%s", i, fe.Field), "%s", fe.Reason)
			}
		}
	}
	for i, sub := range s.Subjects {
		if sub.Ref.Entity == "" || sub.Ref.ID == "" {
			all.add(fmt.Sprintf("subjects[%d].subject", i), "entity and id are required")
		}
		if sub.Origin.IsZero() {
			all.add(fmt.Sprintf("subjects[%d].origin", i), "is required")
		}
	}
	if err := all.err(); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadSeedFile reads and parses a registers file.
func LoadSeedFile(path string, now time.Time) (*Seed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseSeed(data, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
