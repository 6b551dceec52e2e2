// Package testid holds test helpers about subject ids that any package's
// tests can import: it depends on nothing of gdprgate, so internal/gate's own
// tests can use it without the import cycle internal/apptest would make.
package testid

import "strings"

// MentionsID reports whether id occurs in s as a whole token: not as a
// piece of a longer run of letters and digits. A random request id such
// as "…-f96c-5b85-…" holds "c-5" without naming subject c-5, while a
// subject in clear shows as "c-5" in a path, a quoted value or a list.
func MentionsID(s, id string) bool {
	for i := 0; ; {
		k := strings.Index(s[i:], id)
		if k < 0 {
			return false
		}
		k += i
		end := k + len(id)
		if (k == 0 || !alnum(s[k-1])) && (end == len(s) || !alnum(s[end])) {
			return true
		}
		i = k + 1
	}
}

func alnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
