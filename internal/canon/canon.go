// Package canon is gdprgate's one reading of a request. Every front-end
// (ext_authz Check, ext_proc, the reverse proxy, the HTTP authz mode) hands
// the gate the request as it received it, and the gate reads the method, the
// path and any subject or communication type through this package only, so
// that no front-end can read the same bytes differently from another.
//
// The principle: gdprgate must match at least every request that a common
// backend router (Rails, Spring/Tomcat, Express, ASP.NET/IIS, Go's ServeMux,
// PHP) would send to a mapped resource, because over-matching only redacts
// more; and where two readings of the same bytes could name different
// subjects, the request is refused (400) rather than guessed.
//
// Errors are *Error values carrying a stable reason for the 400 answer.
package canon

import (
	"fmt"
	"unicode/utf8"
)

// Error is a request gdprgate refuses to read: malformed or ambiguous. It is
// always answered 400 with Reason as the error code.
type Error struct {
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Reason + ": " + e.Message }

// Reasons of the 400 answers. They are part of the answer body and of the
// decision metrics, so they are stable.
const (
	ReasonBadTarget      = "bad_request_target"
	ReasonFragment       = "fragment_in_target"
	ReasonBadEscape      = "bad_percent_encoding"
	ReasonEncodedSlash   = "encoded_slash"
	ReasonEncodedBSlash  = "encoded_backslash"
	ReasonNUL            = "encoded_nul"
	ReasonDoubleEncoding = "double_encoding"
	ReasonInvalidUTF8    = "invalid_utf8"
	ReasonControlChar    = "control_character"
	ReasonIDTooLong      = "subject_id_too_long"
	ReasonBadMethod      = "bad_method"
	ReasonMethodOverride = "ambiguous_method_override"
	ReasonAmbiguousQuery = "ambiguous_query_parameter"
	ReasonAmbiguousHdr   = "ambiguous_header"
	ReasonAmbiguousBody  = "ambiguous_body"
	ReasonBadBody        = "invalid_body"
)

func errorf(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// DefaultMaxIDBytes bounds a subject id read from a request when the
// configuration does not say otherwise.
const DefaultMaxIDBytes = 256

// ID checks a subject id read from a request (path parameter, query
// parameter, header or body): at most max bytes (0: DefaultMaxIDBytes), valid
// UTF-8, no control characters (C0, DEL or C1). An id that fails is refused,
// never looked up: an unknown id would be a subject never seen before.
func ID(id string, max int) error {
	if max <= 0 {
		max = DefaultMaxIDBytes
	}
	if len(id) > max {
		return errorf(ReasonIDTooLong, "the subject id is longer than %d bytes", max)
	}
	ascii := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c < 0x20 || c == 0x7f {
			return errorf(ReasonControlChar, "the subject id contains a control character")
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	if ascii {
		return nil
	}
	if !utf8.ValidString(id) {
		return errorf(ReasonInvalidUTF8, "the subject id is not valid UTF-8")
	}
	for _, r := range id {
		if r >= 0x80 && r <= 0x9f {
			return errorf(ReasonControlChar, "the subject id contains a control character")
		}
	}
	return nil
}
