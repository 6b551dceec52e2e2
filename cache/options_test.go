package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
)

// TestForAdminMarksTheContextAndWhatDerivesFromIt: a store tells the admin
// API's calls (ForAdmin) from decisions through every context derived from
// the marked one, and only through those.
func TestForAdminMarksTheContextAndWhatDerivesFromIt(t *testing.T) {
	plain := context.Background()
	admin := cache.ForAdmin(plain)
	timed, cancel := context.WithTimeout(admin, time.Minute)
	defer cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want bool
	}{
		{"plain", plain, false},
		{"marked", admin, true},
		{"derived from marked", timed, true},
		{"without cancel", context.WithoutCancel(admin), true},
		{"the parent stays unmarked", plain, false},
	} {
		if got := cache.IsAdmin(c.ctx); got != c.want {
			t.Errorf("%s: IsAdmin = %v, want %v", c.name, got, c.want)
		}
	}
}
