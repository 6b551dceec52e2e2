package lifecycle

import "time"

// Freeze turns st, evaluated at now, into the state of a subject while GDPR
// is not enforced. The manual: with GdprEnforced false "the corresponding
// processes of archiving, expiration and forgetting in data processing are
// not running". So no bit is archived or expired: every bit counts as
// active — except the bits already obliviated when enforcement stopped
// (stoppedAt), which never come back. Without stoppedAt (GDPR never
// enforced) nothing was forgotten.
//
// Coverage, grants and Next stay those of now: evidence still proves (or no
// longer proves) a legal ground for outbound communication, and a cached
// state must still be recomputed when a grant lapses.
func Freeze(st State, in Input, stoppedAt *time.Time, now time.Time) State {
	defined := st.Active | st.Archived | st.Expired | st.Obliviated
	var forgotten uint32
	if stoppedAt != nil {
		at := *stoppedAt
		if at.After(now) {
			at = now
		}
		if at.Equal(now) {
			forgotten = st.Obliviated
		} else {
			forgotten = Evaluate(in, at).Obliviated
		}
	}
	st.Active = defined &^ forgotten
	st.Archived, st.Expired = 0, 0
	st.Obliviated = forgotten
	return st
}
