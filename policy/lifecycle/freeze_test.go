package lifecycle

import (
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

// The manual, on GdprEnforced false: "the corresponding processes of
// archiving, expiration and forgetting in data processing are not running".
func TestFreezeStopsTheLifecycleWhereItStood(t *testing.T) {
	ix := scenario(t)
	bob := Input{Index: ix, Origin: ago(500), Evidence: []model.Evidence{ev("contract-care", ago(500))}}
	dan := Input{Index: ix, Origin: ago(10)}
	cases := []struct {
		name      string
		in        Input
		stoppedAt *time.Time
		want      masks
	}{
		{"archiving not running: Bob's archived bits count as active, his forgotten health stays forgotten", bob, at(now), masks{active: 7, obliviated: 8}},
		{"never enforced: nothing was forgotten, every bit counts as active", dan, nil, masks{active: 15}},
		{"forgetting not running: a bit due after the stop is not forgotten", Input{Index: ix, Origin: ago(1140), Evidence: []model.Evidence{made(ev("contract-care", ago(1140)), ago(900))}}, at(ago(60)), masks{active: 7, obliviated: 8}},
		{"what was forgotten before the stop never comes back", Input{Index: ix, Origin: ago(1200), Evidence: []model.Evidence{made(ev("contract-care", ago(1200)), ago(900))}}, at(ago(60)), masks{obliviated: 15}},
		{"a stop instant after now counts as now", dan, at(now.Add(time.Hour)), masks{active: 7, obliviated: 8}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := Freeze(Evaluate(tc.in, now), tc.in, tc.stoppedAt, now)
			if got := (masks{st.Active, st.Archived, st.Expired, st.Obliviated}); got != tc.want {
				t.Errorf("masks = %+v, want %+v", got, tc.want)
			}
		})
	}
}
