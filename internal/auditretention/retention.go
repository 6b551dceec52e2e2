// Package auditretention bounds the audit trail: entries older than a
// maximum age, or beyond a maximum count, are exported — appended as NDJSON
// to a file (fsynced) or POSTed as NDJSON to an HTTP sink (2xx) — and only
// then trimmed from the store, by entry id. One sidecar at a time does it
// (a store lease).
//
// Export is at least once: a sidecar that dies between exporting a page
// and trimming it exports the page again next time; every line carries the
// entry's id, so a sink can tell.
package auditretention

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/observe"
)

// LeaseName is the store lease the retention runs under.
const LeaseName = "audit-retention"

// Options configure the retention.
type Options struct {
	Store cache.Store
	// MaxAge trims entries whose time is older (0: no age limit).
	MaxAge time.Duration
	// MaxEntries trims the oldest entries beyond this count (0: no limit).
	MaxEntries int64
	// Interval between passes (default 1m).
	Interval time.Duration
	// File and URL are the export destinations; at least one is required.
	// Entries go to every one configured before they are trimmed.
	File  string
	URL   string
	Token string // bearer token for URL
	// Client posts to URL (default: 30s timeout).
	Client *http.Client
	// Page is the number of entries exported and trimmed at a time
	// (default 1000); MaxPages bounds one pass (default 100).
	Page, MaxPages int
	// Holder names this sidecar in the lease (default host-pid-random).
	Holder   string
	LeaseTTL time.Duration // default 30s
	// Clock is now (default time.Now).
	Clock      func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Retention exports and trims the audit trail.
type Retention struct {
	o                          Options
	exported, trimmed, failure prometheus.Counter
}

// New checks o.
func New(o Options) (*Retention, error) {
	if o.Store == nil {
		return nil, errors.New("audit retention: a store is required")
	}
	if o.MaxAge <= 0 && o.MaxEntries <= 0 {
		return nil, errors.New("audit retention: set a maximum age or a maximum number of entries")
	}
	if o.File == "" && o.URL == "" {
		return nil, errors.New("audit retention: entries are exported before they are trimmed: set an export file or URL")
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Page <= 0 {
		o.Page = 1000
	}
	if o.MaxPages <= 0 {
		o.MaxPages = 100
	}
	if o.Holder == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.Holder = host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Retention{o: o}
	r.exported = counter(o.Registerer, "gdprgate_audit_exported_total", "Audit entries exported before being trimmed.")
	r.trimmed = counter(o.Registerer, "gdprgate_audit_trimmed_total", "Audit entries trimmed from the store after their export.")
	r.failure = counter(o.Registerer, "gdprgate_audit_export_failures_total", "Audit retention passes that stopped on a failed export or trim (nothing unexported is trimmed).")
	return r, nil
}

func counter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	return observe.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

// Run makes a pass every Interval until ctx ends.
func (r *Retention) Run(ctx context.Context) error {
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = r.o.Store.ReleaseLease(rctx, LeaseName, r.o.Holder)
	}()
	for {
		res, err := r.Pass(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.failure.Inc()
			r.o.Logger.WarnContext(ctx, "audit retention pass failed; nothing unexported was trimmed", "err", err)
		}
		if res.More && err == nil {
			continue
		}
		t := time.NewTimer(r.o.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// PassResult says what a pass did.
type PassResult struct {
	Leader   bool
	Exported int
	Trimmed  int64
	// More: the pass stopped at MaxPages with entries still due.
	More bool
}

// Pass exports and trims what is due now, when this sidecar holds the lease.
func (r *Retention) Pass(ctx context.Context) (PassResult, error) {
	var res PassResult
	ok, err := r.o.Store.AcquireLease(ctx, LeaseName, r.o.Holder, r.o.LeaseTTL)
	if err != nil || !ok {
		return res, err
	}
	res.Leader = true
	var excess int64
	if r.o.MaxEntries > 0 {
		n, err := r.o.Store.AuditCount(ctx)
		if err != nil {
			return res, fmt.Errorf("count audit entries: %w", err)
		}
		excess = n - r.o.MaxEntries
	}
	var cut time.Time
	if r.o.MaxAge > 0 {
		cut = r.o.Clock().Add(-r.o.MaxAge)
	}
	for page := 0; ; page++ {
		if page >= r.o.MaxPages {
			res.More = true
			return res, nil
		}
		if page > 0 {
			if ok, err := r.o.Store.AcquireLease(ctx, LeaseName, r.o.Holder, r.o.LeaseTTL); err != nil || !ok {
				return res, err
			}
		}
		entries, _, err := r.o.Store.Audit(ctx, "", r.o.Page)
		if err != nil {
			return res, fmt.Errorf("read audit: %w", err)
		}
		// The oldest entries, in order, while they are due: never one after
		// an entry that stays.
		n := 0
		for _, e := range entries {
			if int64(n) < excess || (!cut.IsZero() && e.Time.Before(cut)) {
				n++
				continue
			}
			break
		}
		if n == 0 {
			return res, nil
		}
		due := entries[:n]
		if err := r.export(ctx, due); err != nil {
			return res, err
		}
		res.Exported += n
		r.exported.Add(float64(n))
		trimmed, err := r.o.Store.TrimAudit(ctx, due[n-1].ID)
		if err != nil {
			return res, fmt.Errorf("trim audit (exported through %s): %w", due[n-1].ID, err)
		}
		res.Trimmed += trimmed
		r.trimmed.Add(float64(trimmed))
		excess -= int64(n)
		if n < len(entries) {
			return res, nil
		}
	}
}

// export writes entries to every destination, durably, or fails.
func (r *Retention) export(ctx context.Context, es []audit.Entry) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range es {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("encode audit entry %s: %w", e.ID, err)
		}
	}
	if r.o.File != "" {
		if err := appendSync(r.o.File, buf.Bytes()); err != nil {
			return err
		}
	}
	if r.o.URL != "" {
		if err := r.post(ctx, buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// appendSync appends b to path and syncs it to disk.
func appendSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit export file: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("audit export file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit export file: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit export file: %w", err)
	}
	return nil
}

func (r *Retention) post(ctx context.Context, b []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.o.URL, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("audit export url: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if r.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.o.Token)
	}
	resp, err := r.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("audit export url: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("audit export url: answered %s", resp.Status)
	}
	return nil
}
