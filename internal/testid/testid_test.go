package testid

import "testing"

func TestMentionsIDOnlyAsAWholeToken(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{`"path":"/api/contacts/c-5"`, true},
		{`{"subject":"c-5"}`, true},
		{`c-5`, true},
		{`ids c-5,c-6`, true},
		{`"id":"901e67a9-f96c-5b85-fc15-e20990e59ce2"`, false},
		{`"subject":"h:312cd915"`, false},
		{`c-55`, false},
		{`abc-5 and then /c-5`, true},
	}
	for _, tc := range tests {
		if got := MentionsID(tc.s, "c-5"); got != tc.want {
			t.Errorf("MentionsID(%q, c-5) = %v, want %v", tc.s, got, tc.want)
		}
	}
}
