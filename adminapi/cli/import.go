package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/gdprgate/gdprgate/internal/cmdline"
)

// importOptions are import-evidence's flags.
type importOptions struct {
	atomic   bool
	resume   bool
	state    string        // progress file; "" = FILE.import-state
	progress string        // auto, bar, lines, off
	interval time.Duration // between plain progress lines
	chunk    int           // records per request; 0 = the server's limit, at most defaultChunk
	show     int           // record errors printed at most (0: all)
}

// defaultChunk keeps requests short enough for a progress bar that moves and
// a resume that repeats little, and large enough to cost few round trips.
const defaultChunk = 5000

// Fallback limits for a server that does not announce its own.
const (
	fallbackMaxRecords = 100000
	fallbackMaxBytes   = 256 << 20
)

// importState is what --resume needs to continue an interrupted import: how
// far the server has acknowledged, and a hash of the file up to there so
// that a changed file is not resumed at a wrong place.
type importState struct {
	File    string `json:"file"`
	Offset  int64  `json:"offset"`        // bytes of the file acknowledged
	Line    int    `json:"line"`          // last line acknowledged (1-based)
	Prefix  string `json:"prefix_sha256"` // of the file's first Offset bytes
	Records int    `json:"records"`
	Stored  int    `json:"stored"`
	Errors  int    `json:"errors"`
	Array   bool   `json:"array"`
}

// record is one evidence record read from the file.
type record struct {
	line int    // 1-based line where it starts
	end  int64  // file offset just after it
	data []byte // compact JSON
}

// importRun is one import-evidence invocation.
type importRun struct {
	c        *client
	o        importOptions
	path     string
	stderr   io.Writer
	maxRecs  int
	maxBytes int64
	st       importState
	prog     *progress
	shown    int   // record errors printed so far
	hidden   int   // record errors not printed (past o.show)
	hashed   int64 // bytes of the file hashed into hash so far
	hash     hash.Hash
	hashFile *os.File
}

// importEvidence sends FILE (NDJSON, or a JSON array) to the import endpoint
// in chunks below the server's per-request limits. A line that is not JSON,
// or a record the server refuses, is reported with its 1-based line number
// and the rest goes on. The server keys records by evidence_key or, without
// one, by content, so sending a record twice stores it once: that is what
// makes chunk retries and --resume safe.
func (c *client) importEvidence(ctx context.Context, path string, o importOptions, stderr io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(path)
	if o.state == "" {
		o.state = path + ".import-state"
	}
	run := &importRun{c: c, o: o, path: path, stderr: stderr, hash: sha256.New()}
	run.hashFile, err = os.Open(path)
	if err != nil {
		return err
	}
	defer run.hashFile.Close()
	run.maxRecs, run.maxBytes = c.importLimits(ctx)

	array, err := isArray(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	run.st = importState{File: abs, Array: array}
	if o.resume {
		if err := run.loadState(); err != nil {
			return err
		}
	} else if _, err := os.Stat(o.state); err == nil {
		fmt.Fprintf(stderr, "note: %s records an interrupted import of this file; starting again from the top (--resume continues it; records already stored are not duplicated)\n", o.state)
	}
	if _, err := f.Seek(run.st.Offset, io.SeekStart); err != nil {
		return err
	}
	run.prog = newProgress(stderr, o.progress, o.interval, info.Size(), run.st)

	chunk := o.chunk
	if chunk <= 0 {
		chunk = min(run.maxRecs, defaultChunk)
	}
	if o.atomic {
		chunk = run.maxRecs
	}
	var next func() (record, error)
	if array {
		next, err = arrayRecords(f, run.st.Offset, run.st.Line)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else {
		next = ndjsonRecords(f, run.st.Offset, run.st.Line)
	}
	var batch []record
	var batchBytes int64
	var readErr error
	var localErrs []string
	for {
		rec, err := next()
		if err == io.EOF {
			break
		}
		var le *lineError
		if errors.As(err, &le) {
			run.st.Records++
			run.st.Errors++
			localErrs = append(localErrs, le.Error())
			run.report(le.Error())
			run.prog.update(run.st, le.end)
			if !o.atomic && len(batch) == 0 {
				// Nothing waits to be sent: the bad line is acknowledged now.
				run.st.Offset, run.st.Line = le.end, le.line
			}
			continue
		}
		if err != nil {
			readErr = err
			break
		}
		size := int64(len(rec.data)) + 1
		if size > run.maxBytes {
			run.st.Records++
			run.st.Errors++
			msg := fmt.Sprintf("line %d: the record is %d bytes, more than the server takes in one request (%d)", rec.line, size, run.maxBytes)
			localErrs = append(localErrs, msg)
			run.report(msg)
			continue
		}
		if !o.atomic && len(batch) > 0 && (len(batch) >= chunk || batchBytes+size > run.maxBytes) {
			if err := run.send(ctx, batch); err != nil {
				return err
			}
			batch, batchBytes = batch[:0], 0
		}
		if o.atomic && (len(batch) >= run.maxRecs || batchBytes+size > run.maxBytes) {
			return cmdline.Usagef("--atomic: %s does not fit in one request (at most %d records and %d bytes); without --atomic it is sent in chunks", path, run.maxRecs, run.maxBytes)
		}
		batch = append(batch, rec)
		batchBytes += size
	}
	if o.atomic && len(localErrs) > 0 {
		run.prog.finish(run.st)
		return fmt.Errorf("import: %d line(s) unreadable; nothing was sent (--atomic)", len(localErrs))
	}
	if len(batch) > 0 {
		if err := run.send(ctx, batch); err != nil {
			return err
		}
	}
	run.prog.finish(run.st)
	if readErr != nil {
		_ = run.saveState()
		return fmt.Errorf("%s: %w; the records before it were imported", path, readErr)
	}
	_ = os.Remove(o.state)
	if run.hidden > 0 {
		fmt.Fprintf(c.out, "(%d more record errors not shown: --show-errors 0 shows all)\n", run.hidden)
	}
	fmt.Fprintf(c.out, "import: %d records, %d stored, %d refused\n", run.st.Records, run.st.Stored, run.st.Errors)
	if run.st.Errors > 0 {
		return fmt.Errorf("import: %d record(s) refused (see the lines above)", run.st.Errors)
	}
	return nil
}

// importLimits asks the server for its per-request limits; an older server
// that does not say gets the documented defaults.
func (c *client) importLimits(ctx context.Context) (int, int64) {
	b, err := c.do(ctx, "GET", "/v1/evidence:import", "", nil)
	var l struct {
		MaxRecords int   `json:"max_records"`
		MaxBytes   int64 `json:"max_bytes"`
	}
	if err != nil || json.Unmarshal(b, &l) != nil || l.MaxRecords <= 0 || l.MaxBytes <= 0 {
		return fallbackMaxRecords, fallbackMaxBytes
	}
	return l.MaxRecords, l.MaxBytes
}

// send imports one chunk. A 413 (the server's limits are lower than it
// said) splits the chunk in two and sends both halves.
func (r *importRun) send(ctx context.Context, batch []record) error {
	var body bytes.Buffer
	for _, rec := range batch {
		body.Write(rec.data)
		body.WriteByte('\n')
	}
	path := "/v1/evidence:import"
	if r.o.atomic {
		path += "?atomic=true"
	}
	b, err := r.c.do(ctx, "POST", path, "application/x-ndjson", &body)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusRequestEntityTooLarge && len(batch) > 1 {
		half := len(batch) / 2
		if err := r.send(ctx, batch[:half]); err != nil {
			return err
		}
		return r.send(ctx, batch[half:])
	}
	var out struct {
		Summary *struct {
			Stored   int    `json:"stored"`
			Failed   int    `json:"failed"`
			Complete bool   `json:"complete"`
			Message  string `json:"message"`
		} `json:"summary"`
		Results []struct {
			Index  int    `json:"index"`
			Status string `json:"status"`
			Errors []struct {
				Field  string `json:"field"`
				Reason string `json:"reason"`
			} `json:"errors"`
		} `json:"results"`
	}
	if jerr := json.Unmarshal(b, &out); jerr != nil || out.Summary == nil {
		return r.interrupted(ctx, err)
	}
	for _, res := range out.Results {
		if res.Index < 0 || res.Index >= len(batch) || res.Status == "ok" {
			continue
		}
		line := batch[res.Index].line
		if len(res.Errors) == 0 {
			r.report(fmt.Sprintf("line %d: %s", line, res.Status))
		}
		for _, fe := range res.Errors {
			if fe.Field == "" {
				r.report(fmt.Sprintf("line %d: %s", line, fe.Reason))
			} else {
				r.report(fmt.Sprintf("line %d: %s: %s", line, fe.Field, fe.Reason))
			}
		}
	}
	if !out.Summary.Complete {
		// The server stopped reading this chunk (it should not, as every
		// line was checked to be JSON): what it stored is kept.
		return r.interrupted(ctx, fmt.Errorf("the server did not read the whole chunk: %s", out.Summary.Message))
	}
	r.st.Records += len(batch)
	r.st.Stored += out.Summary.Stored
	r.st.Errors += out.Summary.Failed
	last := batch[len(batch)-1]
	r.st.Offset, r.st.Line = last.end, last.line
	if err := r.saveState(); err != nil {
		return err
	}
	r.prog.update(r.st, last.end)
	return nil
}

// report prints one record's problem, above the progress bar if one is
// drawn.
func (r *importRun) report(msg string) {
	if r.o.show > 0 && r.shown >= r.o.show {
		r.hidden++
		return
	}
	r.shown++
	r.prog.clear()
	fmt.Fprintln(r.c.out, msg)
}

// interrupted reports a chunk that failed as a whole (network, server
// error, Ctrl-C): everything before it is recorded for --resume.
func (r *importRun) interrupted(ctx context.Context, err error) error {
	if err == nil {
		err = errors.New("unexpected answer")
	}
	r.prog.finish(r.st)
	if serr := r.saveState(); serr != nil {
		return fmt.Errorf("%w (and the progress could not be recorded: %v)", err, serr)
	}
	what := "stopped"
	if ctx.Err() != nil {
		what = "interrupted"
	}
	return fmt.Errorf("import %s after line %d (%d records stored so far): %w\nrun the same command with --resume to continue from there",
		what, r.st.Line, r.st.Stored, err)
}

// saveState records the progress atomically (write, then rename).
func (r *importRun) saveState() error {
	if r.st.Offset == 0 {
		return nil
	}
	if err := r.hashTo(r.st.Offset); err != nil {
		return err
	}
	r.st.Prefix = hex.EncodeToString(r.hash.Sum(nil))
	b, _ := json.MarshalIndent(r.st, "", "  ")
	tmp := r.o.state + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("record progress: %w", err)
	}
	if err := os.Rename(tmp, r.o.state); err != nil {
		return fmt.Errorf("record progress: %w", err)
	}
	return nil
}

// loadState reads the state of an interrupted import and checks that the
// file still starts with the bytes that were imported.
func (r *importRun) loadState() error {
	b, err := os.ReadFile(r.o.state)
	if errors.Is(err, os.ErrNotExist) {
		return cmdline.Usagef("--resume: no interrupted import of %s to continue (%s does not exist)", r.path, r.o.state)
	}
	if err != nil {
		return err
	}
	var st importState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("--resume: %s is not an import state file: %w", r.o.state, err)
	}
	if st.File != r.st.File || st.Array != r.st.Array {
		return fmt.Errorf("--resume: %s records an import of %s, not of this file", r.o.state, st.File)
	}
	if err := r.hashTo(st.Offset); err != nil {
		return fmt.Errorf("--resume: %s is shorter than the part already imported: %w", r.path, err)
	}
	if hex.EncodeToString(r.hash.Sum(nil)) != st.Prefix {
		return fmt.Errorf("--resume: %s has changed in its first %d bytes since the interrupted import; import it again without --resume (records already stored are not duplicated)", r.path, st.Offset)
	}
	r.st = st
	fmt.Fprintf(r.stderr, "resuming after line %d (%d records stored before)\n", st.Line, st.Stored)
	return nil
}

// hashTo extends the prefix hash to the file's first n bytes.
func (r *importRun) hashTo(n int64) error {
	if n < r.hashed {
		return fmt.Errorf("hash cannot go back from %d to %d", r.hashed, n)
	}
	w, err := io.Copy(r.hash, io.NewSectionReader(r.hashFile, r.hashed, n-r.hashed))
	r.hashed += w
	if err == nil && r.hashed < n {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// lineError is a record that could not be read; the rest of the file can.
type lineError struct {
	line int
	end  int64
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// isArray reports whether the file's first non-blank byte is '['.
func isArray(f *os.File) (bool, error) {
	br := bufio.NewReader(io.NewSectionReader(f, 0, 1<<20))
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		case 0xEF: // a UTF-8 byte order mark
			continue
		}
		return b == '[', nil
	}
}

// ndjsonRecords reads one record per line from offset; line is the number
// of lines before offset.
func ndjsonRecords(f io.Reader, offset int64, line int) func() (record, error) {
	br := bufio.NewReaderSize(f, 64<<10)
	return func() (record, error) {
		for {
			b, err := br.ReadBytes('\n')
			if len(b) == 0 && err != nil {
				return record{}, err
			}
			line++
			offset += int64(len(b))
			if err != nil && err != io.EOF {
				return record{}, err
			}
			text := bytes.TrimSpace(bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF")))
			if len(text) == 0 {
				continue
			}
			var buf bytes.Buffer
			var probe json.RawMessage
			if cerr := json.Unmarshal(text, &probe); cerr != nil {
				return record{}, &lineError{line: line, end: offset, msg: "not JSON: " + syntaxMessage(cerr, text)}
			}
			_ = json.Compact(&buf, text)
			if buf.Bytes()[0] != '{' {
				return record{}, &lineError{line: line, end: offset, msg: "a record must be a JSON object"}
			}
			return record{line: line, end: offset, data: buf.Bytes()}, nil
		}
	}
}

func syntaxMessage(err error, text []byte) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (column %d)", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	}
	return err.Error()
}

// arrayRecords reads the elements of a JSON array from offset, which is 0
// or just after an element; line is the number of lines before offset. A
// syntax error ends the file: an array cannot be read past one.
func arrayRecords(f io.Reader, offset int64, line int) (func() (record, error), error) {
	br := bufio.NewReaderSize(f, 64<<10)
	var in io.Reader = br
	shift := int64(0) // bytes of the decoder's stream that are not the file's
	if offset > 0 {
		// Resumed after an element: skip the blanks and the comma that
		// follow it, and put a '[' in front of the rest so that the decoder
		// reads it as an array.
		for {
			b, err := br.ReadByte()
			if err != nil {
				return nil, fmt.Errorf("line %d: the array ends early: %v", line, err)
			}
			if b == ' ' || b == '\t' || b == '\r' || b == '\n' {
				offset++
				if b == '\n' {
					line++
				}
				continue
			}
			if b == ',' {
				offset++
			} else {
				_ = br.UnreadByte()
			}
			break
		}
		in = io.MultiReader(strings.NewReader("["), br)
		shift = 1
	}
	lc := &lineCounter{r: in, line: line + 1}
	dec := json.NewDecoder(lc)
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('[') {
		return nil, fmt.Errorf("line %d: a JSON array of records is expected", lc.lineAt(dec.InputOffset()))
	}
	done := false
	return func() (record, error) {
		if done {
			return record{}, io.EOF
		}
		if !dec.More() {
			done = true
			if _, err := dec.Token(); err != nil {
				return record{}, fmt.Errorf("line %d: %v", lc.lineAt(dec.InputOffset()), err)
			}
			return record{}, io.EOF
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			done = true
			return record{}, fmt.Errorf("line %d: %v", lc.lineAt(dec.InputOffset()), strings.TrimPrefix(err.Error(), "json: "))
		}
		end := dec.InputOffset()
		rec := record{line: lc.lineAt(end - int64(len(raw))), end: offset + end - shift}
		var buf bytes.Buffer
		_ = json.Compact(&buf, raw)
		rec.data = buf.Bytes()
		if rec.data[0] != '{' {
			return record{}, &lineError{line: rec.line, end: rec.end, msg: "a record must be a JSON object"}
		}
		return rec, nil
	}, nil
}

// lineCounter counts the newlines a JSON decoder reads so that an element's
// offset can be turned into its line. Newlines already passed are
// forgotten, so memory stays small whatever the file's size.
type lineCounter struct {
	r        io.Reader
	line     int     // line at the first newline not yet passed
	newlines []int64 // stream offsets of newlines not yet passed
	read     int64   // bytes handed to the decoder
}

func (l *lineCounter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for i := 0; i < n; i++ {
		if p[i] == '\n' {
			l.newlines = append(l.newlines, l.read+int64(i))
		}
	}
	l.read += int64(n)
	return n, err
}

// lineAt is the line of stream offset off (calls with non-decreasing off).
func (l *lineCounter) lineAt(off int64) int {
	k := 0
	for k < len(l.newlines) && l.newlines[k] < off {
		k++
	}
	l.line += k
	l.newlines = l.newlines[k:]
	return l.line
}

// progress shows how an import goes: a bar redrawn in place on a terminal,
// or a plain line every interval otherwise.
type progress struct {
	w        io.Writer
	mode     string // bar, lines, off
	interval time.Duration
	size     int64
	start    time.Time
	last     time.Time
	base     int // records done before this run (resume)
	width    int
	drawn    bool
}

func newProgress(w io.Writer, mode string, interval time.Duration, size int64, st importState) *progress {
	p := &progress{w: w, mode: mode, interval: interval, size: size, start: time.Now(), base: st.Records, width: 80}
	if mode == "" || mode == "auto" {
		p.mode = "lines"
		if cols, ok := terminalWidth(w); ok {
			p.mode, p.width = "bar", cols
		}
	}
	p.last = p.start
	return p
}

func (p *progress) rate(st importState) float64 {
	el := time.Since(p.start).Seconds()
	if el <= 0 {
		return 0
	}
	return float64(st.Records-p.base) / el
}

func (p *progress) update(st importState, offset int64) {
	now := time.Now()
	switch p.mode {
	case "bar":
		if now.Sub(p.last) < 100*time.Millisecond && offset < p.size {
			return
		}
		p.last = now
		p.drawBar(st, offset)
	case "lines":
		if now.Sub(p.last) < p.interval {
			return
		}
		p.last = now
		fmt.Fprintf(p.w, "import: %d records (%s of the file), %.0f records/s, %d errors so far\n",
			st.Records, percent(offset, p.size), p.rate(st), st.Errors)
	}
}

func (p *progress) drawBar(st importState, offset int64) {
	text := fmt.Sprintf(" %s %d records %.0f/s %d errors", percent(offset, p.size), st.Records, p.rate(st), st.Errors)
	barw := p.width - len(text) - 3
	if barw < 10 {
		barw = 10
	}
	fill := 0
	if p.size > 0 {
		fill = int(int64(barw) * min(offset, p.size) / p.size)
	}
	fmt.Fprintf(p.w, "\r[%s%s]%s", strings.Repeat("=", fill), strings.Repeat(" ", barw-fill), text)
	p.drawn = true
}

// clear removes a drawn bar so that a line can be printed in its place; the
// next update draws it again.
func (p *progress) clear() {
	if p.mode == "bar" && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func (p *progress) finish(st importState) {
	if p.mode == "bar" && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

func percent(off, size int64) string {
	if size <= 0 {
		return "100%"
	}
	return fmt.Sprintf("%d%%", min(off, size)*100/size)
}

// terminalWidth reports whether w is a terminal, and its width.
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	if err != nil || cols < 20 {
		cols = 80
	}
	return cols, true
}
