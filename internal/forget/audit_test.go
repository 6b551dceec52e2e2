package forget

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// noLoneAudit is a store whose stand-alone audit appends fail: an entry
// must travel with the change it records.
type noLoneAudit struct{ cache.Store }

func (noLoneAudit) AppendAudit(context.Context, audit.Entry) (string, error) {
	return "", fmt.Errorf("append audit: %w", cache.ErrUnavailable)
}

// TestWorkerAuditsEachStepWithItsChange: the worker used to save a step's
// outcome and then append its audit entry on its own, logging and dropping
// the entry when that append failed (issue 10 §7). Each step's and the
// wipe's outcome is now saved together with its entry.
func TestWorkerAuditsEachStepWithItsChange(t *testing.T) {
	for name, fail := range map[string]bool{"every step done": false, "a permanent failure": true} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, model.Config{})
			if fail {
				f.be.failWith = http.StatusForbidden
				f.be.failNext[Steps(plan, f.ref)[1].Path] = 1
			}
			f.enqueue()
			w, err := NewWorker(Options{
				Store: noLoneAudit{f.store}, Plan: plan, Backend: f.url, Consumer: "w1",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hasher: audit.NewHasher([]byte("k")),
				Backoff: time.Millisecond, MinIdle: 20 * time.Millisecond, Block: 10 * time.Millisecond, MaxAttempts: 4,
			})
			if err != nil {
				t.Fatal(err)
			}
			stop := run(w)
			defer stop()
			want := "register.seed,wipe.request,wipe.step,wipe.step,wipe.step,wipe.done"
			status := cache.WipeDone
			if fail {
				want, status = "register.seed,wipe.request,wipe.step,wipe.step,wipe.failed", cache.WipeFailed
			}
			f.waitStatus(status)
			if got := strings.Join(f.auditActions(), ","); got != want {
				t.Fatalf("audit %s, want %s", got, want)
			}
		})
	}
}
