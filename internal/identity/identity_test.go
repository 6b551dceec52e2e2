package identity

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// headers adapts a map to the get function Identify expects.
func headers(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

func TestParseRolesNormalises(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want []string
	}{
		{"empty", "", nil},
		{"single", "agent", []string{"agent"}},
		{"sorted", "supervisor,agent", []string{"agent", "supervisor"}},
		{"spaces trimmed", "  agent ,\tsupervisor  ", []string{"agent", "supervisor"}},
		{"duplicates dropped", "agent,agent, agent", []string{"agent"}},
		{"empty names dropped", ",,agent,, ,", []string{"agent"}},
		{"only separators", " , ,", nil},
		{"inner space kept", "data officer,agent", []string{"agent", "data officer"}},
		{"case sensitive", "Agent,agent", []string{"Agent", "agent"}},
		{"unicode", "správce,agent", []string{"agent", "správce"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseRoles(tt.raw); !slices.Equal(got, tt.want) {
				t.Errorf("ParseRoles(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestIdentifyFromHeader(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		hdr     map[string]string
		want    Caller
		wantErr error
	}{
		{
			name: "roles and caller",
			hdr:  map[string]string{"x-gdpr-roles": "supervisor, agent,agent", "x-gdpr-caller": " alice "},
			want: Caller{ID: "alice", Roles: []string{"agent", "supervisor"}, Method: MethodHeader},
		},
		{
			name: "caller optional",
			hdr:  map[string]string{"x-gdpr-roles": "agent"},
			want: Caller{Roles: []string{"agent"}, Method: MethodHeader},
		},
		{
			name:    "no roles header",
			hdr:     map[string]string{"x-gdpr-caller": "alice"},
			wantErr: ErrNoIdentity,
		},
		{
			name:    "roles header without names",
			hdr:     map[string]string{"x-gdpr-roles": " , "},
			wantErr: ErrNoIdentity,
		},
		{
			name: "configured names are matched lower-case",
			opts: Options{RolesHeader: "X-Roles", CallerHeader: "X-User"},
			hdr:  map[string]string{"x-roles": "agent", "x-user": "bob"},
			want: Caller{ID: "bob", Roles: []string{"agent"}, Method: MethodHeader},
		},
		{
			name: "header trusted without JWT even when the flag is unset",
			opts: Options{TrustRolesHeader: false},
			hdr:  map[string]string{"x-gdpr-roles": "agent"},
			want: Caller{Roles: []string{"agent"}, Method: MethodHeader},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Identify(headers(tt.hdr), time.Now())
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tt.want.ID || got.Method != tt.want.Method || !slices.Equal(got.Roles, tt.want.Roles) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRoleKeyJoinsSortedRoles(t *testing.T) {
	tests := []struct {
		roles []string
		want  string
	}{
		{nil, ""},
		{[]string{"agent"}, "agent"},
		{[]string{"agent", "supervisor"}, "agent,supervisor"},
	}
	for _, tt := range tests {
		if got := (Caller{Roles: tt.roles}).RoleKey(); got != tt.want {
			t.Errorf("RoleKey(%q) = %q, want %q", tt.roles, got, tt.want)
		}
	}
}

func TestHeaderPathAllocatesOnlyTheRolesSlice(t *testing.T) {
	v, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	get := headers(map[string]string{"x-gdpr-roles": "supervisor, agent, gdpr_officer", "x-gdpr-caller": "alice"})
	now := time.Now()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := v.Identify(get, now); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("header path allocates %v times per request, want at most 1", allocs)
	}
}

func BenchmarkIdentifyHeader(b *testing.B) {
	v, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	hdr := map[string]string{"x-gdpr-roles": "supervisor, agent, gdpr_officer", "x-gdpr-caller": "alice"}
	get := func(name string) string { return hdr[name] }
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Identify(get, now); err != nil {
			b.Fatal(err)
		}
	}
}

// errorLeaks reports whether an error message contains any part of a token.
func errorLeaks(err error, tok string) bool {
	if err == nil || tok == "" {
		return false
	}
	msg := err.Error()
	for part := range strings.SplitSeq(tok, ".") {
		if len(part) >= 8 && strings.Contains(msg, part) {
			return true
		}
	}
	return false
}
