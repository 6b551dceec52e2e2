package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of an import run.
const (
	MaxImportRecords  = 200_000_000
	MaxImportBatch    = 100_000
	MaxImportDuration = 60 * time.Minute
)

// ImportConfig describes a bulk evidence import through the admin API
// (POST /v1/evidence:import): Records synthetic subjects, one evidence each.
type ImportConfig struct {
	// AdminURL is the admin API's base URL; loopback only.
	AdminURL string
	// Token is a bearer token with the edit_evidence scope.
	Token string
	// Records is the number of evidence records (one per subject).
	Records int
	// First is the number of the first subject (ids IDPrefix+First …).
	First int
	// Batch is the number of records per request (default 10000).
	Batch int
	// Concurrency is the number of requests in flight (default 4).
	Concurrency int
	// Entity, IDPrefix and LegalKey shape the records (defaults contact,
	// "u-", "LK-CARE").
	Entity, IDPrefix, LegalKey string
	// EvidenceKeys gives every record an evidence_key ("imp-<n>"), as
	// imports from other systems do; without it the server keys records by
	// content.
	EvidenceKeys bool
	// Origin of every record (default 30 days ago).
	Origin time.Time
	// ServerPID, when > 0, is sampled for CPU time around the run.
	ServerPID int
	// Duration bounds the run (default and maximum MaxImportDuration).
	Duration time.Duration
	// Client defaults to an http.Client with a 10-minute timeout.
	Client *http.Client
}

// ImportReport is the outcome of an import run.
type ImportReport struct {
	Records      int64         `json:"records"`
	Stored       int64         `json:"stored"`
	Failed       int64         `json:"failed"`
	Requests     int64         `json:"requests"`
	ErrorSamples []string      `json:"error_samples,omitempty"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	// RecordsPerSecond counts stored records.
	RecordsPerSecond float64       `json:"records_per_second"`
	ServerCPU        time.Duration `json:"server_cpu_ns"`
	// ServerCPUPerRecord is in microseconds.
	ServerCPUPerRecord float64 `json:"server_cpu_us_per_record"`
}

func (c *ImportConfig) normalise(ctx context.Context) error {
	u, err := url.Parse(c.AdminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("admin url %q: want http(s)://host:port", c.AdminURL)
	}
	hostport := u.Host
	if u.Port() == "" {
		hostport += ":80"
	}
	if err := CheckLoopback(ctx, hostport); err != nil {
		return err
	}
	if c.Records <= 0 || c.Records > MaxImportRecords {
		return fmt.Errorf("records %d: want 1..%d", c.Records, MaxImportRecords)
	}
	if c.Batch <= 0 {
		c.Batch = 10000
	}
	if c.Batch > MaxImportBatch {
		return fmt.Errorf("batch %d is above the limit of %d", c.Batch, MaxImportBatch)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.Concurrency > 64 {
		return fmt.Errorf("import concurrency %d is above the limit of 64", c.Concurrency)
	}
	if c.Entity == "" {
		c.Entity = "contact"
	}
	if c.IDPrefix == "" {
		c.IDPrefix = "u-"
	}
	if c.LegalKey == "" {
		c.LegalKey = "LK-CARE"
	}
	if c.Origin.IsZero() {
		c.Origin = time.Now().UTC().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	}
	if c.Duration <= 0 || c.Duration > MaxImportDuration {
		c.Duration = MaxImportDuration
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 10 * time.Minute}
	}
	return nil
}

// Import runs one bounded bulk import.
func Import(ctx context.Context, cfg ImportConfig) (*ImportReport, error) {
	if err := cfg.normalise(ctx); err != nil {
		return nil, fmt.Errorf("loadgen import: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var serverBefore time.Duration
	if cfg.ServerPID > 0 {
		v, err := ProcessCPU(cfg.ServerPID)
		if err != nil {
			return nil, fmt.Errorf("loadgen import: server CPU: %w", err)
		}
		serverBefore = v
	}
	rep := &ImportReport{Records: int64(cfg.Records)}
	var (
		nextBatch      atomic.Int64
		stored, failed atomic.Int64
		requests       atomic.Int64
		mu             sync.Mutex
		wg             sync.WaitGroup
	)
	sample := func(err error) {
		mu.Lock()
		if len(rep.ErrorSamples) < 5 && !slices.Contains(rep.ErrorSamples, err.Error()) {
			rep.ErrorSamples = append(rep.ErrorSamples, err.Error())
		}
		mu.Unlock()
	}
	batches := (cfg.Records + cfg.Batch - 1) / cfg.Batch
	start := time.Now()
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body bytes.Buffer
			for ctx.Err() == nil {
				b := int(nextBatch.Add(1) - 1)
				if b >= batches {
					return
				}
				lo := b * cfg.Batch
				hi := min(lo+cfg.Batch, cfg.Records)
				body.Reset()
				cfg.writeRecords(&body, cfg.First+lo, cfg.First+hi)
				requests.Add(1)
				n, err := cfg.post(ctx, &body)
				stored.Add(int64(n))
				if err != nil {
					failed.Add(int64(hi - lo - n))
					sample(err)
				}
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	rep.Stored, rep.Failed, rep.Requests = stored.Load(), failed.Load(), requests.Load()
	if rep.Elapsed > 0 {
		rep.RecordsPerSecond = float64(rep.Stored) / rep.Elapsed.Seconds()
	}
	if cfg.ServerPID > 0 {
		after, err := ProcessCPU(cfg.ServerPID)
		if err != nil {
			return rep, fmt.Errorf("loadgen import: server CPU after the run: %w", err)
		}
		rep.ServerCPU = after - serverBefore
		if rep.Stored > 0 {
			rep.ServerCPUPerRecord = float64(rep.ServerCPU.Nanoseconds()) / 1e3 / float64(rep.Stored)
		}
	}
	if err := ctx.Err(); err != nil && rep.Stored < rep.Records {
		return rep, fmt.Errorf("loadgen import: stopped after %s: %w", rep.Elapsed.Round(time.Millisecond), err)
	}
	return rep, nil
}

// writeRecords appends NDJSON records for subjects [lo, hi).
func (c *ImportConfig) writeRecords(w *bytes.Buffer, lo, hi int) {
	origin := c.Origin.Format(time.RFC3339)
	var num []byte
	for n := lo; n < hi; n++ {
		num = strconv.AppendInt(num[:0], int64(n), 10)
		w.WriteString(`{"subject":{"entity":`)
		w.WriteString(strconv.Quote(c.Entity))
		w.WriteString(`,"id":"`)
		w.WriteString(c.IDPrefix)
		w.Write(num)
		w.WriteString(`"},"legal_key":`)
		w.WriteString(strconv.Quote(c.LegalKey))
		w.WriteString(`,"origin":"`)
		w.WriteString(origin)
		w.WriteByte('"')
		if c.EvidenceKeys {
			w.WriteString(`,"evidence_key":"imp-`)
			w.Write(num)
			w.WriteByte('"')
		}
		w.WriteString("}\n")
	}
}

// post sends one batch and returns the number of records stored.
func (c *ImportConfig) post(ctx context.Context, body *bytes.Buffer) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.AdminURL+"/v1/evidence:import", bytes.NewReader(body.Bytes()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Accept", "application/x-ndjson")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// NDJSON answer: one result per record, then {"summary":{…}}. Only the
	// summary is needed: skip the results without decoding them.
	var last []byte
	dec := json.NewDecoder(resp.Body)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return 0, fmt.Errorf("import answer (HTTP %d): %w", resp.StatusCode, err)
		}
		last = raw
	}
	var sum struct {
		Summary struct {
			Stored  int    `json:"stored"`
			Failed  int    `json:"failed"`
			Error   string `json:"error"`
			Message string `json:"message"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(last, &sum); err != nil || resp.StatusCode >= 300 && sum.Summary.Stored == 0 && sum.Summary.Error == "" {
		return 0, fmt.Errorf("import answer HTTP %d: %.200s", resp.StatusCode, last)
	}
	if sum.Summary.Failed > 0 || sum.Summary.Error != "" {
		return sum.Summary.Stored, fmt.Errorf("import HTTP %d: %d failed: %s %s", resp.StatusCode, sum.Summary.Failed, sum.Summary.Error, sum.Summary.Message)
	}
	return sum.Summary.Stored, nil
}

// Format writes the import report for people.
func (r *ImportReport) Format(w io.Writer) error {
	_, err := fmt.Fprintf(w, "records     %d (stored %d, failed %d) in %d requests\nelapsed     %s\nrate        %.0f records/s\n",
		r.Records, r.Stored, r.Failed, r.Requests, r.Elapsed.Round(time.Millisecond), r.RecordsPerSecond)
	if err == nil && r.ServerCPU > 0 {
		_, err = fmt.Fprintf(w, "server CPU  %s total, %.2f µs/record\n", r.ServerCPU, r.ServerCPUPerRecord)
	}
	for _, s := range r.ErrorSamples {
		if err == nil {
			_, err = fmt.Fprintf(w, "error       %s\n", s)
		}
	}
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
