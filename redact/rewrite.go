package redact

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"
)

type hmacHash = hash.Hash

// Result describes what a Rewrite did.
type Result struct {
	// Redacted lists the FieldSpec paths redacted at least once, sorted and
	// without duplicates (the x-gdpr-redacted header). Nil when none.
	Redacted []string
	// Items counts the subjects the body was rewritten for: the elements of
	// the subject array when SubjectPath has "#", otherwise 1.
	Items int
	// Values counts the values replaced or removed.
	Values int
}

// ErrDuplicateSubject is returned when one subject scope holds its subject id
// twice: which one governs would be a guess, so the rewrite fails closed.
var ErrDuplicateSubject = errors.New("redact: subject id appears more than once")

// ErrSubjectType is returned when a subject id is not a string, number or null.
var ErrSubjectType = errors.New("redact: subject id must be a string or a number")

// ErrShape is returned when a container stands where the paths expect the
// other kind — an object holding members where they go through a list's
// items (#), a list holding items where they name keys — below the root:
// no path selects anything in it, so its values would pass unredacted,
// yet a client reads them (an API that sends a list as an object keyed by
// index, as PHP does for a list with gaps). An empty one carries nothing
// and passes.
var ErrShape = errors.New("redact: a value is not the JSON shape the paths describe")

// ErrSubjectNotFound is returned by Subject when the body has no subject id.
var ErrSubjectNotFound = errors.New("redact: subject id not found in body")

// rewriter holds the per-call state and the scratch buffers that make a
// rewrite allocation-free once warm; Map keeps them in a sync.Pool.
type rewriter struct {
	scanner
	m       *Map
	planner Planner
	out     []byte
	last    int // src[last:] has not been copied to out yet
	mask    uint32
	subj    int // subject ids seen in the current scope
	hit     []bool
	res     Result
	keyBuf  []byte
	idBuf   []byte
	hashBuf []byte
	mac     hash.Hash
	lit     [36]byte // "h:" + 32 hex digits, quoted
	// quiet > 0: only validate and note matches (below a redacted value,
	// or for Select); nothing is written and no planner is asked.
	quiet int
	// matched, when set, gets the bit of every field that selects a value
	// (the rewriter's own words: the caller's slice is only written at the
	// end, so that it need not escape to the heap).
	matched []uint64
	mbuf    []uint64
	// collect, when set (Subjects), gets every item's subject id instead
	// of a planner being asked.
	collect func(id []byte)
	// memos backs scanner.memo (nil while the memo is off, for tests).
	memos keyMemos
}

type pool struct {
	m *Map
	p sync.Pool
}

func (p *pool) get() *rewriter {
	if r, ok := p.p.Get().(*rewriter); ok {
		return r
	}
	r := &rewriter{m: p.m, hit: make([]bool, len(p.m.fields)), mbuf: make([]uint64, p.m.MatchedWords())}
	r.scanner.memo = &r.memos
	if len(p.m.hashKey) > 0 {
		r.mac = newHMAC(p.m.hashKey)
	}
	return r
}

func (p *pool) put(r *rewriter) {
	r.src, r.out, r.planner, r.matched, r.collect = nil, nil, nil, nil, nil
	r.res = Result{}
	r.quiet = 0
	r.scanner.memo = &r.memos
	clear(r.hit)
	clear(r.mbuf)
	p.p.Put(r)
}

// Rewrite appends the redacted src to dst and returns the extended slice.
// src is validated as strict JSON in the same pass. On error the returned
// slice is dst unchanged (no partial output) and Result is zero; a Planner
// error is returned wrapped. A nil Planner sees nothing. dst must not overlap src; pass the previous
// output's [:0] to reuse its memory, which makes a warm rewrite allocate only
// Result.Redacted.
func (m *Map) Rewrite(dst, src []byte, p Planner) (out []byte, res Result, err error) {
	return m.RewriteMatched(dst, src, p, nil)
}

// RewriteMatched is Rewrite that also sets, in matched, bit k (word k/64,
// bit k%64) for every field Paths()[k] that selects at least one value of
// src, whether it was redacted or not — how a caller finds mapped paths
// that its bodies never contain. matched needs MatchedWords() words; nil
// skips the bookkeeping. Its bits are meaningless when an error is returned.
func (m *Map) RewriteMatched(dst, src []byte, p Planner, matched []uint64) (out []byte, res Result, err error) {
	return m.rewriteMatched(dst, src, p, matched, true)
}

// rewriteMatched is RewriteMatched; memo false turns the key memo off (the
// tests' reference).
func (m *Map) rewriteMatched(dst, src []byte, p Planner, matched []uint64, memo bool) (out []byte, res Result, err error) {
	r := m.pool.get()
	defer m.pool.put(r)
	r.src, r.depth, r.planner = src, 0, p
	if !memo {
		r.scanner.memo = nil
	}
	r.out, r.last = dst, 0
	if matched != nil {
		r.matched = r.mbuf
	}
	if err := r.run(); err != nil {
		return dst, Result{}, err
	}
	for i := range matched {
		matched[i] |= r.mbuf[i]
	}
	out = append(r.out, src[r.last:]...)
	res = r.res
	for _, f := range m.sorted {
		if r.hit[f] {
			if res.Redacted == nil {
				res.Redacted = make([]string, 0, len(m.fields))
			}
			res.Redacted = append(res.Redacted, m.fields[f].path)
		}
	}
	return out, res, nil
}

// Select validates src and returns the mapped paths (sorted) that select at
// least one value in it, without rewriting anything. A subject id that
// appears twice in one scope is an error, as in Rewrite.
func (m *Map) Select(src []byte) ([]string, error) {
	r := m.pool.get()
	defer m.pool.put(r)
	r.src, r.depth, r.quiet, r.matched = src, 0, 1, r.mbuf
	if err := r.run(); err != nil {
		return nil, err
	}
	matched := r.mbuf
	var out []string
	for k, f := range m.sorted {
		if matched[k>>6]&(1<<(k&63)) != 0 {
			out = append(out, m.fields[f].path)
		}
	}
	return out, nil
}

// Subjects calls fn with the subject id of every list item of src (a
// SubjectPath with "#"), in order, repeats included, without rewriting
// anything — so that a caller can read all of them at once before Rewrite.
// The id is only valid during the call. src is validated as in Select.
func (m *Map) Subjects(src []byte, fn func(id []byte)) error {
	if !m.perElement {
		return errors.New("redact: the spec has no per-item subject (SubjectPath without \"#\")")
	}
	r := m.pool.get()
	defer m.pool.put(r)
	r.src, r.depth, r.quiet, r.collect = src, 0, 1, fn
	return r.run()
}

func (r *rewriter) run() error {
	m := r.m
	r.mask, r.subj = 0, 0
	if !m.perElement {
		var id []byte
		found := true
		if m.hasSubject {
			var err error
			id, found, err = r.findSubject(r.ws(0), m.subjectRel, &r.idBuf)
			if err != nil {
				return err
			}
		}
		if err := r.plan(id, found); err != nil {
			return err
		}
	}
	i, err := r.rewrite(r.ws(0), m.root)
	if err != nil {
		return err
	}
	if i = r.ws(i); i != len(r.src) {
		return r.errAt(i, "trailing data after the JSON value")
	}
	return nil
}

// plan asks the Planner for the mask of one subject scope.
func (r *rewriter) plan(id []byte, found bool) error {
	r.subj = 0
	r.mask = 0
	if r.collect != nil {
		if found {
			r.collect(id)
		}
		return nil
	}
	if r.quiet > 0 {
		return nil
	}
	r.res.Items++
	if !found || r.planner == nil {
		return nil // fail closed: nothing is visible for an unknown subject
	}
	mask, err := r.planner.Visible(id)
	if err != nil {
		return fmt.Errorf("redact: planner for subject %q: %w", id, err)
	}
	r.mask = mask
	return nil
}

// replace emits src[r.last:a] then repl, and skips src[a:b].
func (r *rewriter) replace(a, b int, repl []byte) {
	if r.quiet > 0 {
		return
	}
	r.out = append(r.out, r.src[r.last:a]...)
	r.out = append(r.out, repl...)
	r.last = b
}

// rewrite rewrites the value at i under automaton node n.
func (r *rewriter) rewrite(i int, n *node) (int, error) {
	if uint(i) < uint(len(r.src)) {
		switch r.src[i] {
		case '"': // most values: one call less
			j, _, err := r.str(i)
			return j, err
		case '{':
			if n.list && r.holds(i, '}') {
				return 0, fmt.Errorf("%w (offset %d)", ErrShape, i)
			}
			if n.obj {
				return r.object(i, n)
			}
		case '[':
			if n.arr {
				return r.array(i, n)
			}
			if n.obj && r.holds(i, ']') {
				return 0, fmt.Errorf("%w (offset %d)", ErrShape, i)
			}
		}
	}
	return r.value(i)
}

// holds reports, for a container at i that is not the mapped shape, whether
// it is refused: below the root (the caller judges the root's shape), when
// not only validating, and when it holds something — a first byte that is
// not its end (at the end of the body it is simply invalid, as a stream
// finds it).
func (r *rewriter) holds(i int, end byte) bool {
	if r.depth == 0 || r.quiet > 0 || r.m.anyShape {
		return false
	}
	j := r.ws(i + 1)
	return j < len(r.src) && r.src[j] != end
}

// keeps reports whether member would keep a string value under n as it
// is, with nothing to note: n is no subject id, and it has no field, or
// none that needs noting (matched) and none hidden (or only validating).
func (r *rewriter) keeps(n *node) bool {
	return n == nil || !n.subject && (n.fields == nil || r.matched == nil && (r.quiet > 0 || r.mask&n.bits == n.bits))
}

// hides reports whether member would replace a string value under n by a
// short null or mask: n is no subject id, has one field, hidden, and the
// rewrite writes (no matched paths to note below it).
func (r *rewriter) hides(n *node) bool {
	return n != nil && !n.subject && n.one != nil && n.one.short && r.mask&n.bits == 0 && r.matched == nil && r.quiet == 0
}

// redacted reports whether the value under n is to be redacted: one of its
// fields' bits is not visible.
func (r *rewriter) redacted(n *node) bool {
	return n.fields != nil && r.mask&n.bits != n.bits
}

// strongest marks the fields of n that are hidden and returns the one whose
// action discloses least, for values that several paths select.
func (r *rewriter) strongest(n *node) *field {
	if n.one != nil {
		r.hit[n.fields[0]] = true
		return n.one
	}
	var best *field
	for _, fi := range n.fields {
		f := &r.m.fields[fi]
		if r.mask&f.bit != 0 {
			continue
		}
		r.hit[fi] = true
		if best == nil || disclosure[f.action] < disclosure[best.action] {
			best = f
		}
	}
	return best
}

// disclosure orders actions by what the replacement still tells.
var disclosure = [...]int{ActRemove: 0, ActNull: 1, ActMask: 2, ActHash: 3}

// member rewrites one member value or array element at i (whitespace
// skipped) under n, cutting it out when removed. start is where the member
// begins (its key, or the element), comma the index of the comma before it
// (-1 for the first), emitted whether a member before it was kept. It
// returns the index after the value and the new emitted.
func (r *rewriter) member(i, start, comma int, emitted bool, n *node) (int, bool, error) {
	if n == nil {
		if uint(i) < uint(len(r.src)) && r.src[i] == '"' { // most values: one call less
			j, _, err := r.str(i)
			return j, true, err
		}
		j, err := r.value(i)
		return j, true, err
	}
	if n.subject {
		if r.subj++; r.subj > 1 {
			return 0, false, fmt.Errorf("%w (offset %d)", ErrDuplicateSubject, i)
		}
	}
	if r.matched != nil {
		for _, nb := range n.noted {
			r.matched[nb.w] |= nb.b
		}
	}
	if r.quiet > 0 || !r.redacted(n) {
		if uint(i) < uint(len(r.src)) && r.src[i] == '"' { // most values: two calls less
			j, _, err := r.str(i)
			return j, true, err
		}
		j, err := r.rewrite(i, n)
		return j, true, err
	}
	f := r.strongest(n)
	r.res.Values++
	var j int
	var err error
	if r.matched != nil && n.inner {
		// Paths below a redacted value still count as present.
		r.quiet++
		j, err = r.rewrite(i, n)
		r.quiet--
	} else if uint(i) < uint(len(r.src)) && r.src[i] == '"' { // one call less
		j, _, err = r.str(i)
	} else {
		j, err = r.value(i)
	}
	if err != nil {
		return 0, false, err
	}
	switch f.action {
	case ActRemove:
		// Cut the comma before the member when one was kept before it; when
		// none was, that comma is already gone and the member is cut alone.
		if emitted {
			r.replace(comma, j, nil)
		} else {
			r.replace(start, j, nil)
		}
		return j, emitted, nil
	case ActHash:
		v := r.src[i:j]
		if v[0] == '"' {
			// A string is hashed by its decoded content.
			v = v[1 : len(v)-1]
			if bytes.IndexByte(v, '\\') >= 0 {
				r.keyBuf = unescape(r.keyBuf[:0], v)
				v = r.keyBuf
			}
		}
		r.replace(i, j, r.hash(v))
	default:
		if f.short {
			r.hide(i, j, f)
		} else {
			r.replace(i, j, f.repl)
		}
	}
	return j, true, nil
}

// hide is replace(i, j, f.repl) for a short replacement (f.short). Most
// replacements are a short kept run (the separator and key between two
// redacted values, `,"last_name":`) and a short replacement (null, a
// mask): five word stores into the output's spare capacity instead of two
// memmove calls (replace itself must stay small enough to inline). The
// stores may write past the new length, within capacity, where the next
// append writes anyway.
func (r *rewriter) hide(i, j int, f *field) {
	out, src, last := r.out, r.src, r.last
	n, k := len(out), i-last
	if r.quiet == 0 && uint(k) <= 32 && cap(out)-n >= 40 && last >= 0 && last+32 <= len(src) {
		o := out[n : n+40 : n+40]
		s := src[last : last+32 : last+32]
		binary.LittleEndian.PutUint64(o, binary.LittleEndian.Uint64(s))
		binary.LittleEndian.PutUint64(o[8:16], binary.LittleEndian.Uint64(s[8:16]))
		binary.LittleEndian.PutUint64(o[16:24], binary.LittleEndian.Uint64(s[16:24]))
		binary.LittleEndian.PutUint64(o[24:32], binary.LittleEndian.Uint64(s[24:32]))
		binary.LittleEndian.PutUint64(o[k&63:], f.replW)
		r.out = r.out[:n+k+len(f.repl)] // the same array: no pointer store, no write barrier
		r.last = j
		return
	}
	r.replace(i, j, f.repl)
}

// hash returns the ActHash replacement of v, valid until the next call.
func (r *rewriter) hash(v []byte) []byte {
	r.mac.Reset()
	r.mac.Write(v)
	r.hashBuf = r.mac.Sum(r.hashBuf[:0])
	copy(r.lit[:], `"h:`)
	hex.Encode(r.lit[3:35], r.hashBuf[:16])
	r.lit[35] = '"'
	return r.lit[:]
}

// object rewrites the object at i under n.
func (r *rewriter) object(i int, n *node) (int, error) {
	if err := r.enter(i); err != nil {
		return 0, err
	}
	src := r.src
	fold := r.m.fold
	j := r.ws(i + 1)
	if uint(j) < uint(len(src)) && src[j] == '}' {
		r.depth--
		return j + 1, nil
	}
	emitted, comma := false, -1
	km := r.memoFor(n)
	for k := 0; ; k++ {
		if uint(j) >= uint(len(src)) || src[j] != '"' {
			if j = r.ws(j); j >= len(src) || src[j] != '"' {
				return 0, r.unexpected(j, "a string key")
			}
		}
		start := j
		var c *node
		var end int
		var err error
		if km != nil && k < len(km.keys) && r.memoHit(j, &km.keys[k]) {
			e := &km.keys[k]
			c, end = e.c, j+2+e.l
		} else {
			var flags uint8
			if end, flags, err = r.str(j); err != nil {
				return 0, err
			}
			key := src[j+1 : end-1]
			high := flags&strHigh != 0
			if flags&strEsc != 0 {
				r.keyBuf = unescape(r.keyBuf[:0], key)
				key = r.keyBuf
				high = hasHighByte(key)
			}
			c = n.lookup(key, high, fold)
			if km != nil {
				km.remember(k, src, j+1, end-1-(j+1), flags, c)
			}
		}
		// Compact JSON has the separators right after the tokens: they
		// are looked for before any whitespace.
		if j = end; uint(j) >= uint(len(src)) || src[j] != ':' {
			if j = r.ws(j); j >= len(src) || src[j] != ':' {
				return 0, r.unexpected(j, "':'")
			}
		}
		// A string value that stays as it is, the bulk of a body, is
		// read here: member would only call str.
		if v := j + 1; uint(v) < uint(len(src)) && src[v] == '"' && r.keeps(c) {
			if j, _, err = r.str(v); err != nil {
				return 0, err
			}
			emitted = true
		} else if uint(v) < uint(len(src)) && src[v] == '"' && r.hides(c) {
			// A string hidden by one field's null or mask, the bulk of a
			// list whose subjects may see little: what member would do,
			// without the call.
			r.hit[c.fields[0]] = true
			r.res.Values++
			if j, _, err = r.str(v); err != nil {
				return 0, err
			}
			r.hide(v, j, c.one)
			emitted = true
		} else if c == nil { // an unmapped number, literal or container: member would only call value
			if j, err = r.value(r.ws(v)); err != nil {
				return 0, err
			}
			emitted = true
		} else if j, emitted, err = r.member(r.ws(v), start, comma, emitted, c); err != nil {
			return 0, err
		}
		if uint(j) < uint(len(src)) && src[j] == ',' { // compact JSON: the comma right after the value
			if !emitted {
				r.replace(j, j+1, nil) // every member so far was removed
			}
			comma = j
			j++
			continue
		}
		if j = r.ws(j); uint(j) < uint(len(src)) {
			switch src[j] {
			case ',':
				if !emitted {
					r.replace(j, j+1, nil) // every member so far was removed
				}
				comma = j
				j++ // the key's quote is looked for before any whitespace
				continue
			case '}':
				r.depth--
				return j + 1, nil
			}
		}
		return 0, r.unexpected(j, "',' or '}'")
	}
}

// array rewrites the array at i whose elements are under n's element
// transitions.
func (r *rewriter) array(i int, n *node) (int, error) {
	if err := r.enter(i); err != nil {
		return 0, err
	}
	src := r.src
	j := r.ws(i + 1)
	if uint(j) < uint(len(src)) && src[j] == ']' {
		r.depth--
		return j + 1, nil
	}
	// Per-element subjects hold only inside their element: outside it the
	// mask of the enclosing scope applies again.
	mask, subj := r.mask, r.subj
	emitted, comma := false, -1
	next := 0
	for k := 0; ; k++ {
		el := n.element(k, &next)
		if el != nil && el.scope {
			// The subject id may follow the fields it governs: find it
			// first with a scan of this element only, so the whole rewrite
			// reads each byte at most twice.
			id, found, err := r.findSubject(j, r.m.subjectRel, &r.idBuf)
			if err != nil {
				return 0, err
			}
			if err := r.plan(id, found); err != nil {
				return 0, err
			}
		}
		var err error
		if uint(j) < uint(len(src)) && src[j] == '"' && r.keeps(el) {
			if j, _, err = r.str(j); err != nil {
				return 0, err
			}
			emitted = true
		} else if j, emitted, err = r.member(j, j, comma, emitted, el); err != nil {
			return 0, err
		}
		if j = r.ws(j); uint(j) < uint(len(src)) {
			switch src[j] {
			case ',':
				if !emitted {
					r.replace(j, j+1, nil)
				}
				comma = j
				j = r.ws(j + 1)
				continue
			case ']':
				r.depth--
				r.mask, r.subj = mask, subj
				return j + 1, nil
			}
		}
		return 0, r.unexpected(j, "',' or ']'")
	}
}

// findSubject looks for the scalar at the relative path rel in the value at
// i, without validating beyond what it reads (the rewrite validates). Keys
// are matched as the Map matches them; a number in rel also indexes an
// array. A string id is returned decoded (in *buf when it has escapes), a
// number as its text; null or a missing key gives found == false.
func (r *rewriter) findSubject(i int, rel []seg, buf *[]byte) (id []byte, found bool, err error) {
	return r.scanner.findSubject(i, rel, r.m.fold, buf)
}

func (s *scanner) findSubject(i int, rel []seg, fold bool, buf *[]byte) (id []byte, found bool, err error) {
	src := s.src
	if len(rel) == 0 {
		if i >= len(src) {
			return nil, false, s.unexpected(i, "a value")
		}
		switch c := src[i]; {
		case c == '"':
			end, flags, err := s.str(i)
			if err != nil {
				return nil, false, err
			}
			if flags&strEsc != 0 {
				*buf = unescape((*buf)[:0], src[i+1:end-1])
				return *buf, true, nil
			}
			return src[i+1 : end-1], true, nil
		case c == '-' || isDigit(c):
			end, err := s.num(i)
			if err != nil {
				return nil, false, err
			}
			return src[i:end], true, nil
		case c == 'n':
			_, err := s.lit(i, "null")
			return nil, false, err
		default:
			return nil, false, fmt.Errorf("%w (offset %d)", ErrSubjectType, i)
		}
	}
	if i >= len(src) {
		return nil, false, nil
	}
	switch src[i] {
	case '{':
	case '[':
		return s.findSubjectElement(i, rel, fold, buf)
	default:
		return nil, false, nil
	}
	j := s.ws(i + 1)
	if j < len(src) && src[j] == '}' {
		return nil, false, nil
	}
	want := rel[0].key
	for {
		if j >= len(src) || src[j] != '"' {
			return nil, false, s.unexpected(j, "a string key")
		}
		end, flags, err := s.str(j)
		if err != nil {
			return nil, false, err
		}
		key := src[j+1 : end-1]
		if flags&strEsc != 0 {
			*buf = unescape((*buf)[:0], key)
			key = *buf
		}
		var match bool
		switch {
		case !fold:
			match = string(key) == want
		case rel[0].lowered && flags&strHigh == 0 && (flags&strEsc == 0 || !hasHighByte(key)):
			match = eqFoldASCII(key, want)
		default:
			match = eqFold(key, want)
		}
		j = s.ws(end)
		if j >= len(src) || src[j] != ':' {
			return nil, false, s.unexpected(j, "':'")
		}
		j = s.ws(j + 1)
		if match {
			id, found, err := s.findSubject(j, rel[1:], fold, buf)
			if err != nil || found {
				return id, found, err
			}
		}
		if j, err = s.value(j); err != nil {
			return nil, false, err
		}
		j = s.ws(j)
		if j < len(src) {
			switch src[j] {
			case ',':
				j = s.ws(j + 1)
				continue
			case '}':
				return nil, false, nil
			}
		}
		return nil, false, s.unexpected(j, "',' or '}'")
	}
}

// findSubjectElement follows an index of rel into the array at i.
func (s *scanner) findSubjectElement(i int, rel []seg, fold bool, buf *[]byte) (id []byte, found bool, err error) {
	want := rel[0].idx
	if want < 0 {
		return nil, false, nil
	}
	src := s.src
	j := s.ws(i + 1)
	if j < len(src) && src[j] == ']' {
		return nil, false, nil
	}
	for k := 0; ; k++ {
		if k == want {
			return s.findSubject(j, rel[1:], fold, buf)
		}
		if j, err = s.value(j); err != nil {
			return nil, false, err
		}
		j = s.ws(j)
		if j < len(src) {
			switch src[j] {
			case ',':
				j = s.ws(j + 1)
				continue
			case ']':
				return nil, false, nil
			}
		}
		return nil, false, s.unexpected(j, "',' or ']'")
	}
}

// Subject returns the body's single subject id (SubjectPath without "#") so
// the caller can decide on the subject before rewriting. It reads only as far
// as the id; the body is validated by Rewrite (or Select). The id is a
// string's decoded content or a number's text and may alias src.
func (m *Map) Subject(src []byte) ([]byte, error) {
	if !m.hasSubject || m.perElement {
		return nil, errors.New("redact: the spec has no single body subject (SubjectPath is empty or has \"#\")")
	}
	s := scanner{src: src}
	var buf []byte
	id, found, err := s.findSubject(s.ws(0), m.subjectRel, m.fold, &buf)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrSubjectNotFound
	}
	return id, nil
}
