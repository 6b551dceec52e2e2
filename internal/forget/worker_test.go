package forget

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

var plan = Plan{"contact": {
	{Name: "contact", Method: "DELETE", Path: "/api/contacts/{id}"},
	{Name: "calls", Method: "DELETE", Path: "/api/contacts/{id}/calls"},
	{Name: "issues", Method: "DELETE", Path: "/api/issues?contact_id={id}", Issue: true},
}}

// backend is a CRM stand-in: each resource exists until deleted once; a
// repeated DELETE answers 404. It counts calls and effective deletions.
type backend struct {
	mu       sync.Mutex
	exists   map[string]bool
	calls    map[string]int
	deleted  map[string]int
	failNext map[string]int // path → answers of failStatus still to give
	failWith int
	// onCall runs (outside the lock) after a call has been applied.
	onCall func(path string)
}

func newBackend(id string) *backend {
	b := &backend{exists: map[string]bool{}, calls: map[string]int{}, deleted: map[string]int{}, failNext: map[string]int{}, failWith: 503}
	for _, s := range Steps(plan, model.SubjectRef{Entity: "contact", ID: id}) {
		b.exists[s.Path] = true
	}
	return b
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.RequestURI()
	b.mu.Lock()
	b.calls[p]++
	if b.failNext[p] > 0 {
		b.failNext[p]--
		b.mu.Unlock()
		w.WriteHeader(b.failWith)
		return
	}
	found := b.exists[p]
	if found {
		delete(b.exists, p)
		b.deleted[p]++
	}
	hook := b.onCall
	b.mu.Unlock()
	if hook != nil {
		hook(p)
	}
	if !found {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (b *backend) counts() (calls, deleted map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, d := map[string]int{}, map[string]int{}
	for k, v := range b.calls {
		c[k] = v
	}
	for k, v := range b.deleted {
		d[k] = v
	}
	return c, d
}

type fixture struct {
	t     *testing.T
	store *memstore.Store
	be    *backend
	url   string
	ref   model.SubjectRef
	id    string
}

func newFixture(t *testing.T, cfg model.Config) *fixture {
	t.Helper()
	st := memstore.New(cache.Options{})
	t.Cleanup(func() { st.Close() })
	cfg.IdentityEntity = "contact"
	if _, err := st.SaveRegisters(context.Background(), &model.Registers{Config: cfg}, 0, audit.Entry{Actor: "test", Action: "register.seed"}); err != nil {
		t.Fatal(err)
	}
	ref := model.SubjectRef{Entity: "contact", ID: "c-7"}
	be := newBackend(ref.ID)
	hs := httptest.NewServer(be)
	t.Cleanup(hs.Close)
	return &fixture{t: t, store: st, be: be, url: hs.URL, ref: ref}
}

func (f *fixture) enqueue() {
	f.t.Helper()
	f.id = cache.NewID("w-")
	w := cache.WipeRecord{ID: f.id, Subject: f.ref, Status: cache.WipeQueued, Steps: Steps(plan, f.ref), CreatedAt: time.Now()}
	if err := f.store.EnqueueWipe(context.Background(), w, audit.Entry{Actor: "test", Action: "wipe.request"}); err != nil {
		f.t.Fatal(err)
	}
	fa, err := f.store.Facts(context.Background(), f.ref, time.Now())
	if err != nil || !fa.Restricted {
		f.t.Fatalf("subject not restricted at once: %+v %v", fa, err)
	}
}

func (f *fixture) worker(name string) *Worker {
	f.t.Helper()
	w, err := NewWorker(Options{
		Store: f.store, Plan: plan, Backend: f.url, Consumer: name,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hasher: audit.NewHasher([]byte("k")),
		Backoff: time.Millisecond, MinIdle: 20 * time.Millisecond, Block: 10 * time.Millisecond, MaxAttempts: 4,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return w
}

// run starts w until the returned stop is called.
func run(w *Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func (f *fixture) waitStatus(want string) cache.WipeRecord {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, err := f.store.Wipe(context.Background(), f.id)
		if err == nil && w.Status == want {
			return w
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("wipe status %q (err %v), want %q: %+v", w.Status, err, want, w)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) setConfig(cfg model.Config) {
	f.t.Helper()
	ctx := context.Background()
	ix, _ := f.store.Registers(ctx)
	cfg.IdentityEntity = "contact"
	if _, err := f.store.SaveRegisters(ctx, &model.Registers{Config: cfg}, ix.Version, audit.Entry{Actor: "test", Action: "config.replace"}); err != nil {
		f.t.Fatal(err)
	}
}

// assertOnceInEffect checks every resource was deleted exactly once and
// returns the per-path call counts.
func (f *fixture) assertOnceInEffect() map[string]int {
	f.t.Helper()
	calls, deleted := f.be.counts()
	for _, s := range Steps(plan, f.ref) {
		if deleted[s.Path] != 1 {
			f.t.Errorf("%s deleted %d times, want 1 (calls %d)", s.Path, deleted[s.Path], calls[s.Path])
		}
	}
	return calls
}

func (f *fixture) auditActions() []string {
	entries, _, _ := f.store.Audit(context.Background(), "", 1000)
	var out []string
	for _, e := range entries {
		if strings.Contains(e.Subject+e.Object+e.Detail["error"], f.ref.ID) {
			f.t.Errorf("audit entry names the subject in clear: %+v", e)
		}
		out = append(out, e.Action)
	}
	return out
}

func TestWorkerDeletesEveryStepOnceAndAuditsEach(t *testing.T) {
	f := newFixture(t, model.Config{})
	f.enqueue()
	stop := run(f.worker("w1"))
	defer stop()
	rec := f.waitStatus(cache.WipeDone)
	for _, s := range rec.Steps {
		if s.Status != StepDone || s.Attempts != 1 || s.DoneAt.IsZero() {
			t.Errorf("step %+v", s)
		}
	}
	calls := f.assertOnceInEffect()
	if len(calls) != 3 {
		t.Errorf("calls %v", calls)
	}
	got := strings.Join(f.auditActions(), ",")
	if want := "register.seed,wipe.request,wipe.step,wipe.step,wipe.step,wipe.done"; got != want {
		t.Errorf("audit %s, want %s", got, want)
	}
	// The restriction stays after the wipe: the subject is gone.
	if fa, _ := f.store.Facts(context.Background(), f.ref, time.Now()); !fa.Restricted {
		t.Error("subject not restricted after the wipe")
	}
}

func TestWorkerKilledMidWipeIsResumedWithoutRepeatingDoneSteps(t *testing.T) {
	f := newFixture(t, model.Config{})
	f.enqueue()
	callsPath := Steps(plan, f.ref)[1].Path
	ctx1, kill := context.WithCancel(context.Background())
	var once sync.Once
	// The backend applies the second step, then the first worker dies
	// before it sees the answer.
	f.be.onCall = func(p string) {
		if p == callsPath {
			once.Do(func() { kill(); time.Sleep(20 * time.Millisecond) })
		}
	}
	done := make(chan error)
	go func() { done <- f.worker("w1").Run(ctx1) }()
	<-done
	rec, _ := f.store.Wipe(context.Background(), f.id)
	if rec.Steps[0].Status != StepDone || rec.Steps[1].Status == StepDone || rec.Status == cache.WipeDone {
		t.Fatalf("after the kill: %+v", rec)
	}

	stop := run(f.worker("w2"))
	defer stop()
	f.waitStatus(cache.WipeDone)
	calls := f.assertOnceInEffect()
	if calls[Steps(plan, f.ref)[0].Path] != 1 {
		t.Errorf("the done step was repeated: %v", calls)
	}
}

func TestWorkerRetriesTransientBackendFailures(t *testing.T) {
	f := newFixture(t, model.Config{})
	first := Steps(plan, f.ref)[0].Path
	f.be.failNext[first] = 2
	f.enqueue()
	stop := run(f.worker("w1"))
	defer stop()
	rec := f.waitStatus(cache.WipeDone)
	if rec.Steps[0].Attempts != 3 {
		t.Errorf("first step attempts %d, want 3", rec.Steps[0].Attempts)
	}
	f.assertOnceInEffect()
}

func TestWorkerKeepsWipeWhenBackendStaysDown(t *testing.T) {
	f := newFixture(t, model.Config{})
	first := Steps(plan, f.ref)[0].Path
	f.be.failNext[first] = 6 // more than one claim's 4 attempts
	f.enqueue()
	stop := run(f.worker("w1"))
	defer stop()
	rec := f.waitStatus(cache.WipeDone)
	if rec.Steps[0].Attempts != 7 || rec.Attempts < 2 {
		t.Errorf("attempts step %d wipe %d", rec.Steps[0].Attempts, rec.Attempts)
	}
	f.assertOnceInEffect()
}

func TestWorkerFailsOnPermanentBackendAnswer(t *testing.T) {
	f := newFixture(t, model.Config{})
	f.be.failWith = http.StatusForbidden
	f.be.failNext[Steps(plan, f.ref)[1].Path] = 1
	f.enqueue()
	stop := run(f.worker("w1"))
	defer stop()
	rec := f.waitStatus(cache.WipeFailed)
	if rec.Steps[0].Status != StepDone || rec.Steps[1].Status != StepFailed || rec.Steps[2].Status != StepPending || rec.Error == "" {
		t.Errorf("record %+v", rec)
	}
	acts := f.auditActions()
	if acts[len(acts)-1] != "wipe.failed" {
		t.Errorf("audit %v", acts)
	}
}

func TestSuspendWipesHoldsTheWholeWipeUntilLifted(t *testing.T) {
	f := newFixture(t, model.Config{SuspendWipes: true})
	f.enqueue()
	stop := run(f.worker("w1"))
	defer stop()
	rec := f.waitStatus(cache.WipeSuspended)
	time.Sleep(60 * time.Millisecond) // several re-claims
	if calls, _ := f.be.counts(); len(calls) != 0 {
		t.Fatalf("suspended wipe called the backend: %v", calls)
	}
	for _, s := range rec.Steps {
		if s.Status != StepSuspended {
			t.Errorf("step %+v", s)
		}
	}
	f.setConfig(model.Config{})
	f.waitStatus(cache.WipeDone)
	f.assertOnceInEffect()
}

func TestSuspendWipeIssueHoldsOnlyIssueSteps(t *testing.T) {
	f := newFixture(t, model.Config{SuspendWipeIssue: true})
	f.enqueue()
	stop := run(f.worker("w1"))
	defer stop()
	rec := f.waitStatus(cache.WipeSuspended)
	if rec.Steps[0].Status != StepDone || rec.Steps[1].Status != StepDone || rec.Steps[2].Status != StepSuspended {
		t.Fatalf("steps %+v", rec.Steps)
	}
	_, deleted := f.be.counts()
	if deleted[Steps(plan, f.ref)[2].Path] != 0 {
		t.Fatal("issues deleted while suspended")
	}
	f.setConfig(model.Config{})
	f.waitStatus(cache.WipeDone)
	calls := f.assertOnceInEffect()
	if calls[Steps(plan, f.ref)[0].Path] != 1 {
		t.Errorf("done step repeated after the suspension: %v", calls)
	}
}

func TestCancelledWipeIsNotExecuted(t *testing.T) {
	f := newFixture(t, model.Config{})
	f.enqueue()
	rec, _ := f.store.Wipe(context.Background(), f.id)
	rec.Status = cache.WipeCancelled
	if err := f.store.SaveWipe(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	stop := run(f.worker("w1"))
	time.Sleep(50 * time.Millisecond)
	stop()
	if calls, _ := f.be.counts(); len(calls) != 0 {
		t.Fatalf("cancelled wipe called the backend: %v", calls)
	}
}

func TestStepsExpandTheIDSafely(t *testing.T) {
	got := Steps(plan, model.SubjectRef{Entity: "contact", ID: "a b/&x=1"})
	want := []string{"/api/contacts/a%20b%2F&x=1", "/api/contacts/a%20b%2F&x=1/calls", "/api/issues?contact_id=a+b%2F%26x%3D1"}
	for i := range want {
		if got[i].Path != want[i] || got[i].Method != "DELETE" || got[i].Status != StepPending {
			t.Errorf("step %d: %+v, want path %s", i, got[i], want[i])
		}
	}
	if Steps(plan, model.SubjectRef{Entity: "invoice", ID: "1"}) != nil {
		t.Error("an entity without plan has steps")
	}
}
