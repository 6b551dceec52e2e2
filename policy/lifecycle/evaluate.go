package lifecycle

import "time"

// Evaluate computes the subject's state at now.
func Evaluate(in Input, now time.Time) State {
	var s State
	if in.Index != nil {
		s.Obliviated = in.Index.Defined
	}
	return s
}
