package model

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/internal/yamlfile"
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

// ParseTime reads a time as a registers file may write it: RFC 3339
// ("2026-01-31T09:00:00Z"), a date ("2026-01-31", midnight UTC) or relative
// to now ("now-100d"). Its errors explain the syntax.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if t, ok := ResolveTime(s, now); ok {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.Parse("2006-01-02", s); err == nil {
		return d, nil
	}
	if strings.HasPrefix(strings.TrimSpace(s), "now") {
		return time.Time{}, fmt.Errorf("%q is not a relative time: write now, or now, a sign and numbers with units d (days), h, m, s: now-100d, now+30d, now-1d12h", s)
	}
	return time.Time{}, fmt.Errorf("%q is not a time: write a date (2026-01-31), a date and time (2026-01-31T09:00:00Z, RFC 3339) or a time relative to now (now-100d)", s)
}

// DecodeStrict decodes YAML or JSON into out, rejecting unknown fields (with
// the name probably meant), keys given twice and values of the wrong kind,
// each with its line and column. Time fields may be relative to now
// ("now-100d").
func DecodeStrict(data []byte, now time.Time, out any) error {
	return yamlfile.Decode(data, out, fileOptions(now))
}

func fileOptions(now time.Time) yamlfile.Options {
	return yamlfile.Options{Tag: "json", Time: func(s string) (time.Time, error) { return ParseTime(s, now) }}
}

// ParseSeed decodes and validates a registers file. Every validation problem
// is reported, registers and evidence alike (evidence fields are prefixed
// "evidence[i]."). Times may be absolute (RFC 3339 or YYYY-MM-DD) or relative
// to now ("now-100d").
func ParseSeed(data []byte, now time.Time) (*Seed, error) {
	root, err := yamlfile.Parse(data)
	if err != nil {
		return nil, err
	}
	var s Seed
	if root != nil {
		if err := yamlfile.DecodeNode(root, &s, fileOptions(now)); err != nil {
			return nil, err
		}
	}
	s2, err := s.validate(now)
	if ve := (*ValidationError)(nil); errors.As(err, &ve) {
		for i := range ve.Errors {
			ve.Errors[i].Line, ve.Errors[i].Column = yamlfile.Locate(root, ve.Errors[i].Field)
		}
	}
	return s2, err
}

// validate fills defaults and checks the registers, evidence and subjects.
func (s *Seed) validate(now time.Time) (*Seed, error) {
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
	return s, nil
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
