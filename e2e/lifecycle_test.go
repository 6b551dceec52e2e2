package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/forget"
	"github.com/gdprgate/gdprgate/internal/testredis"
	"github.com/gdprgate/gdprgate/policy/model"
)

const day = 24 * time.Hour

// fakeClock is gdprgate's clock in lifecycle tests: periods of years pass
// in a test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// lifecycleStack is gdprgate in front of the example CRM on Redis, on a
// fake clock, with the wipe worker running and the sweeper driven by the
// test (App.Sweeper.Pass).
func lifecycleStack(t *testing.T, redisURL string, clk *fakeClock, configure func(*config.Config)) *stack {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	clk.Set(now)
	backend := crm.New(now)
	crmSrv := httptest.NewServer(backend)
	t.Cleanup(crmSrv.Close)
	sc := apptest.New(t, apptest.Options{Now: now, Clock: clk.Now, WipeWorker: true, Configure: func(cfg *config.Config) {
		cfg.Upstream = crmSrv.URL
		cfg.RedisURL = redisURL
		cfg.Admin.Tokens = []config.AdminToken{{Name: "e2e", SHA256: sha(adminToken), Scopes: []string{"admin"}}}
		if configure != nil {
			configure(cfg)
		}
	}})
	s := front(t, sc, crmSrv.URL, func(method, path string) bool { return strings.HasPrefix(path, "/api/outbound/") })
	s.crm, s.crmURL = backend, crmSrv.URL
	s.adminTS = httptest.NewServer(sc.App.Admin)
	t.Cleanup(s.adminTS.Close)
	return s
}

// sweep runs sweeper passes until the backlog is done.
func (s *stack) sweep(t *testing.T) forget.PassResult {
	t.Helper()
	var total forget.PassResult
	for range 1000 {
		res, err := s.app.Sweeper.Pass(t.Context())
		if err != nil {
			t.Fatalf("sweep: %v", err)
		}
		total.Processed += res.Processed
		total.Recomputed += res.Recomputed
		if !res.More {
			return total
		}
	}
	t.Fatal("the sweeper never catches up")
	return total
}

func (s *stack) contact(t *testing.T, id string) (crm.Contact, bool) {
	t.Helper()
	return s.crm.Contact(id)
}

// A contact nobody reads is archived, expired and forgotten at the right
// instants by the sweeper alone: its obliviated sensitivities are erased in
// the CRM by their erasure steps (PATCH nulling the fields), and the whole
// contact is wiped when nothing of it may be kept.
func TestSweeperAloneForgetsAContactNobodyReads(t *testing.T) {
	clk := &fakeClock{}
	s := lifecycleStack(t, testredis.Start(t).URL(), clk, func(cfg *config.Config) {
		cfg.Lifecycle.Deletions = "auto"
		cfg.Wipes.PerMinute = 10000
	})
	L := clk.Now()
	// Heidi (c-8): created at L-40d, no evidence: the sensitivities'
	// defaults apply (health forgotten at once; significant at 365 d,
	// contact at 730 d, auxiliary at 1095 d from her origin).
	origin := L.Add(-40 * day)
	if c, _ := s.contact(t, "c-8"); c.HealthNotes == "" || c.BirthYear == 0 {
		t.Fatalf("c-8 starts without data: %+v", c)
	}
	steps := []struct {
		at    time.Time
		check func(c crm.Contact, ok bool) bool
		what  string
	}{
		{L, func(c crm.Contact, ok bool) bool { return ok && c.HealthNotes == "" && c.BirthYear != 0 }, "health notes erased, the rest kept"},
		{origin.Add(365 * day), func(c crm.Contact, ok bool) bool {
			return ok && c.BirthYear == 0 && c.Sex == "" && c.FirstName != ""
		}, "significant data erased at 365 d"},
		{origin.Add(730 * day), func(c crm.Contact, ok bool) bool {
			return ok && c.FirstName == "" && c.Email == "" && c.CustomerNumber != ""
		}, "contact data erased at 730 d"},
		{origin.Add(1095 * day), func(c crm.Contact, ok bool) bool { return !ok }, "the contact wiped at 1095 d"},
	}
	for i, st := range steps {
		if i > 0 {
			// A second before the instant, the previous state holds.
			clk.Set(st.at.Add(-time.Second))
			s.sweep(t)
			time.Sleep(200 * time.Millisecond) // give a wrong deletion a chance to show
			if c, ok := s.contact(t, "c-8"); !steps[i-1].check(c, ok) || st.check(c, ok) {
				t.Fatalf("step %d: a second early the CRM holds %+v (present %v)", i, c, ok)
			}
		}
		clk.Set(st.at)
		s.sweep(t)
		eventually(t, 20*time.Second, st.what, func() bool { return st.check(s.contact(t, "c-8")) })
	}
	// Between the erasures the gate showed the states the lifecycle gives:
	// archived contact data is hidden from the agent at 180 d.
	ws, _ := s.app.Store.ListWipes(t.Context(), 0)
	var erasures, wipes int
	for _, w := range ws {
		if w.Subject.ID == "c-8" {
			switch w.Kind {
			case cache.KindErasure:
				erasures++
			case cache.KindWipe:
				wipes++
			}
		}
	}
	if erasures != 3 || wipes != 1 {
		t.Fatalf("c-8: %d erasures and %d wipes, want 3 and 1 (auxiliary went with the wipe)", erasures, wipes)
	}
}

// Reads never delete and never record anything for ids the backend does
// not answer for; the first 2xx answer records the backend's created_at
// (origin_from) as the data's origin.
func TestReadsNeverDeleteAndRecordOriginsOnlyForAnswers(t *testing.T) {
	rs := testredis.Start(t)
	clk := &fakeClock{}
	s := lifecycleStack(t, rs.URL(), clk, nil)
	for _, c := range []call{
		{path: "/api/contacts/c-5", roles: "agent"},      // Eve: obliviated, 404
		{path: "/api/contacts/c-5", roles: "supervisor"}, // again
		{path: "/api/contacts?per_page=50", roles: "agent"},
	} {
		both(t, s, c)
	}
	ro, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(ro)
	t.Cleanup(func() { rc.Close() })
	before, err := rc.DBSize(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if r := s.viaProxy(t, call{path: fmt.Sprintf("/api/contacts/x-%d", i), roles: "agent"}); r.status != 404 {
			t.Fatalf("unknown id: %d", r.status)
		}
	}
	if after, _ := rc.DBSize(t.Context()).Result(); after != before {
		t.Fatalf("300 reads of unknown ids made %d keys", after-before)
	}
	if ws, _ := s.app.Store.ListWipes(t.Context(), 0); len(ws) != 0 {
		t.Fatalf("reads created deletion work: %+v", ws)
	}
	if _, ok := s.contact(t, "c-5"); !ok {
		t.Fatal("a read deleted Eve")
	}
	// A contact the seed does not know, created 200 days ago in the CRM.
	created := clk.Now().Add(-200 * day).UTC()
	s.crm.AddContact(crm.Contact{ID: "c-new", FirstName: "Olivia", HealthNotes: "x", CreatedAt: created.Format(time.RFC3339)})
	if r := s.viaProxy(t, call{path: "/api/contacts/c-new", roles: "agent"}); r.status != 200 {
		t.Fatalf("new contact: %d %s", r.status, r.body)
	}
	ref := model.SubjectRef{Entity: "contact", ID: "c-new"}
	eventually(t, 10*time.Second, "the backend's created_at recorded as origin", func() bool {
		rec, err := s.app.Store.Subject(t.Context(), ref)
		return err == nil && rec.Subject.Origin.Equal(created)
	})
	// Recorded once: the next reads find it in the cached facts (the
	// cache learns of the write when the recording returns, which may be
	// after another reader saw it in Redis).
	eventually(t, 10*time.Second, "a stated origin in the cached facts", func() bool {
		f, err := s.app.Store.Facts(t.Context(), ref, clk.Now())
		return err == nil && f.Origin == cache.OriginStated
	})
	// The subject is now indexed: the sweeper will forget it on time.
	ds, _ := s.app.Store.Due(t.Context(), clk.Now(), 100)
	found := false
	for _, d := range ds {
		found = found || d.Ref == ref
	}
	if !found {
		t.Fatal("the newly met contact is not in the due index")
	}
}

// Lifecycle deletions are held by default: nothing is deleted until an
// operator approves, through the admin API, with an audit entry.
func TestHeldDeletionsDoNothingUntilApproved(t *testing.T) {
	clk := &fakeClock{}
	s := lifecycleStack(t, testredis.Start(t).URL(), clk, nil)
	s.sweep(t)
	code, body := s.admin(t, "GET", "/v1/deletions?state=held&kind=wipe", "")
	if code != 200 {
		t.Fatalf("list held: %d %s", code, body)
	}
	var list struct {
		Deletions []cache.WipeRecord `json:"deletions"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	var eve string
	for _, d := range list.Deletions {
		if d.Subject.ID == "c-5" {
			eve = d.ID
		}
	}
	if eve == "" {
		t.Fatalf("Eve's wipe is not held: %s", body)
	}
	time.Sleep(500 * time.Millisecond) // the worker runs meanwhile
	if _, ok := s.contact(t, "c-5"); !ok {
		t.Fatal("a held deletion deleted Eve")
	}
	if c, _ := s.contact(t, "c-4"); c.HealthNotes == "" {
		t.Fatal("a held erasure erased Dan's health notes")
	}
	code, body = s.admin(t, "POST", "/v1/deletions/"+url.PathEscape(eve)+"/approve", "")
	if code != 200 {
		t.Fatalf("approve: %d %s", code, body)
	}
	eventually(t, 20*time.Second, "Eve deleted after approval", func() bool {
		_, ok := s.contact(t, "c-5")
		return !ok
	})
	if c, _ := s.contact(t, "c-4"); c.HealthNotes == "" {
		t.Fatal("approving one deletion ran another")
	}
	entries, _, _ := s.app.Store.Audit(t.Context(), "", 10000)
	var approved bool
	for _, e := range entries {
		approved = approved || e.Action == "deletion.approve" && e.Object == "wipes/"+eve && e.Actor == "e2e"
	}
	if !approved {
		t.Fatal("no deletion.approve audit entry")
	}
	if code, _ := s.admin(t, "POST", "/v1/deletions/"+url.PathEscape(eve)+"/reject", ""); code != 409 {
		t.Fatalf("rejecting an approved deletion: %d, want 409", code)
	}
}

// A register change that would obliviate 500 subjects is refused without
// a confirmation; its dry run reports the 500 deletions and changes nothing.
func TestRegisterChangeObliviating500NeedsConfirmation(t *testing.T) {
	clk := &fakeClock{}
	s := lifecycleStack(t, testredis.Start(t).URL(), clk, nil)
	now := clk.Now()
	for _, w := range []struct{ path, body string }{
		{"/v1/purposes", `{"id":"bulk","name":"Bulk marketing","archivation_time":null,"archivation_period":null,"expiration_time":null,"expiration_period":1500,"obliviation_time":null,"obliviation_period":2000,"renewal_type":"none","evidence_period_offset":0}`},
		{"/v1/legalisations", `{"id":"bulk-consent","name":"Bulk consent","category_id":"consent","purpose_id":"bulk","coverage":3,"evidence_key_obligatory":false,"reference_obligatory":false,"comm_id_obligatory":false,"contact_obligatory":false,"privacy_permission":0,"same_project":false,"same_project_group":false,"active_from":null,"retire_from":null}`},
	} {
		if code, body := s.admin(t, "POST", w.path, w.body); code != 201 {
			t.Fatalf("POST %s: %d %s", w.path, code, body)
		}
	}
	evs := make([]model.Evidence, 500)
	for i := range evs {
		ref := model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("bulk-%03d", i)}
		if err := s.app.Store.PutSubject(t.Context(), model.Subject{Ref: ref, Origin: now.Add(-200 * day)}, audit.Entry{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		evs[i] = model.Evidence{Subject: ref, LegalisationID: "bulk-consent", Origin: now.Add(-200 * day), CreatedAt: now, CreatedBy: "test"}
	}
	if _, err := s.app.Store.PutEvidence(t.Context(), evs, audit.Entry{Actor: "test", Time: now}); err != nil {
		t.Fatal(err)
	}
	s.sweep(t) // what is due today is applied first
	change := `{"id":"bulk","name":"Bulk marketing","archivation_time":null,"archivation_period":null,"expiration_time":null,"expiration_period":50,"obliviation_time":null,"obliviation_period":100,"renewal_type":"none","evidence_period_offset":0}`
	code, body := s.admin(t, "PUT", "/v1/purposes/bulk?dry_run=true", change)
	if code != 200 {
		t.Fatalf("dry run: %d %s", code, body)
	}
	var dry struct {
		DryRun  bool                 `json:"dry_run"`
		Preview forget.ChangePreview `json:"preview"`
	}
	if err := json.Unmarshal(body, &dry); err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Preview.Deletions.Total != 500 || dry.Preview.Deletions.Erasures != 500 || dry.Preview.Bits["contact"]["active→obliviated"] != 500 {
		t.Fatalf("dry run preview = %+v, want 500 erasures", dry.Preview)
	}
	code, body = s.admin(t, "PUT", "/v1/purposes/bulk", change)
	if code != 409 || !strings.Contains(string(body), "confirmation_required") {
		t.Fatalf("unconfirmed change: %d %s", code, body)
	}
	ix, _ := s.app.Store.Registers(t.Context())
	if p := ix.Purposes["bulk"]; *p.ObliviationPeriod != 2000 {
		t.Fatal("a refused change was saved")
	}
	if code, body = s.admin(t, "PUT", "/v1/purposes/bulk?confirm=true", change); code != 200 {
		t.Fatalf("confirmed change: %d %s", code, body)
	}
	res := s.sweep(t)
	if res.Recomputed < 500 {
		t.Fatalf("the change recomputed %d subjects", res.Recomputed)
	}
	held, _ := s.app.Store.HeldWipes(t.Context(), 0)
	n := 0
	for _, h := range held {
		if strings.HasPrefix(h.Subject.ID, "bulk-") && h.Kind == cache.KindErasure && h.Bits == 0b0011 {
			n++
		}
	}
	if n != 500 {
		t.Fatalf("%d erasures held after the change, want 500", n)
	}
}

// The mass-deletion guard is counted in Redis: two sidecars share it.
func TestMassDeletionGuardHoldsAcrossTwoSidecars(t *testing.T) {
	rs := testredis.Start(t)
	clkA, clkB := &fakeClock{}, &fakeClock{}
	conf := func(cfg *config.Config) { cfg.Wipes.PerMinute = 3 }
	a := lifecycleStack(t, rs.URL(), clkA, conf)
	b := lifecycleStack(t, rs.URL(), clkB, conf)
	clkB.Set(clkA.Now())
	for i, st := range []*stack{a, b, a} {
		if code, body := st.admin(t, "POST", "/v1/wipes", fmt.Sprintf(`{"entity":"contact","id":"c-%d"}`, i+1)); code != 202 {
			t.Fatalf("wipe %d: %d %s", i+1, code, body)
		}
	}
	code, body := b.admin(t, "POST", "/v1/wipes", `{"entity":"contact","id":"c-4"}`)
	if code != 429 || !strings.Contains(string(body), "mass_deletion_guard") {
		t.Fatalf("fourth wipe in a minute, on the other sidecar: %d %s", code, body)
	}
	if code, body := b.admin(t, "POST", "/v1/wipes", `{"entity":"contact","id":"c-4","confirm":true}`); code != 202 {
		t.Fatalf("confirmed: %d %s", code, body)
	}
}

// dyingStore is a sidecar that dies after creating its batch's deletions
// and before committing: it never commits nor releases its lease.
type dyingStore struct{ cache.Store }

func (dyingStore) CommitSweep(context.Context, []cache.SweepUpdate) ([]bool, error) {
	return nil, errors.New("killed")
}
func (dyingStore) ReleaseLease(context.Context, string, string) error { return errors.New("killed") }

// Killing the sweeper's lease holder hands the lease over, and no
// transition is lost or applied twice.
func TestSweeperLeaseHandoverLosesAndDoublesNothing(t *testing.T) {
	rs := testredis.Start(t)
	clk := &fakeClock{}
	conf := func(cfg *config.Config) { cfg.Lifecycle.LeaseTTL = time.Second }
	b := lifecycleStack(t, rs.URL(), clk, conf)
	now := clk.Now()
	for i := range 40 {
		ref := model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("lease-%02d", i)}
		if err := b.app.Store.PutSubject(t.Context(), model.Subject{Ref: ref, Origin: now.Add(-time.Duration(i) * day)}, audit.Entry{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	// Sidecar A: same store, dies in its first batch after creating work.
	exA, err := forget.NewExecutor(forget.ExecutorOptions{Store: dyingStore{b.app.Store}, Plans: b.app.Forget.Plans(),
		Hasher: audit.NewHasher(b.app.Config.HashKey), Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	a, err := forget.NewSweeper(forget.SweeperOptions{Executor: exA, Batch: 10, LeaseTTL: time.Second, Holder: "sidecar-a"})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := a.Pass(t.Context()); err == nil || !res.Leader {
		t.Fatalf("sidecar A: %+v, %v; want it to lead and die", res, err)
	}
	created, _ := b.app.Store.HeldWipes(t.Context(), 0)
	if len(created) == 0 {
		t.Fatal("A died before creating anything: the test proves nothing")
	}
	// B cannot lead while A's lease runs; then it takes over.
	if res, _ := b.app.Sweeper.Pass(t.Context()); res.Leader {
		t.Fatal("B led while A's lease was still running")
	}
	eventually(t, 10*time.Second, "B takes the lease over", func() bool {
		res, err := b.app.Sweeper.Pass(t.Context())
		return err == nil && res.Leader
	})
	b.sweep(t)
	if due, _ := b.app.Store.Due(t.Context(), clk.Now(), 1000); len(due) != 0 {
		t.Fatalf("%d subjects left due after the handover", len(due))
	}
	held, _ := b.app.Store.HeldWipes(t.Context(), 0)
	seen := map[string]int{}
	for _, h := range held {
		seen[h.Subject.ID+"/"+h.Kind+fmt.Sprint(h.Bits)]++
	}
	for i := range 40 {
		id := fmt.Sprintf("lease-%02d", i)
		if n := seen[id+"/"+cache.KindErasure+"8"]; n != 1 {
			t.Fatalf("%s: %d health erasures, want exactly 1", id, n)
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%s created %d times", k, n)
		}
	}
}

// Wiping a contact wipes its phone number (a subject whose parent is the
// contact) in the same request, each with its own wipe and audit entry.
func TestWipeCascadesToTheContactsPhoneNumber(t *testing.T) {
	clk := &fakeClock{}
	s := lifecycleStack(t, testredis.Start(t).URL(), clk, nil)
	code, body := s.admin(t, "POST", "/v1/wipes", `{"entity":"contact","id":"c-14"}`)
	if code != 202 {
		t.Fatalf("wipe: %d %s", code, body)
	}
	var res struct {
		ID      string `json:"id"`
		Cascade []struct {
			ID      string           `json:"id"`
			Subject model.SubjectRef `json:"subject"`
		} `json:"cascade"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	phone := model.SubjectRef{Entity: "phone_number", ID: "+493012345014"}
	if len(res.Cascade) != 1 || res.Cascade[0].Subject != phone {
		t.Fatalf("cascade = %+v, want the phone number", res.Cascade)
	}
	code, body = s.admin(t, "GET", "/v1/subjects/phone_number/"+url.PathEscape(phone.ID), "")
	var view struct {
		Restricted bool `json:"restricted"`
	}
	if code != 200 || json.Unmarshal(body, &view) != nil || !view.Restricted {
		t.Fatalf("phone number after the contact's wipe: %d %s", code, body)
	}
	w, err := s.app.Store.Wipe(t.Context(), res.Cascade[0].ID)
	if err != nil || w.Parent != res.ID || w.Reason != cache.ReasonCascade {
		t.Fatalf("cascaded wipe = %+v, %v", w, err)
	}
	entries, _, _ := s.app.Store.Audit(t.Context(), "", 10000)
	var cascade bool
	for _, e := range entries {
		cascade = cascade || e.Action == "wipe.cascade" && e.Object == "wipes/"+res.Cascade[0].ID
	}
	if !cascade {
		t.Fatal("no wipe.cascade audit entry for the phone number")
	}
	eventually(t, 20*time.Second, "the contact deleted in the CRM", func() bool {
		_, ok := s.contact(t, "c-14")
		return !ok
	})
}
