package redact

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// DefaultMaxHeld is StreamOptions.MaxHeld when it is zero.
const DefaultMaxHeld = 1 << 20

// streamSlice is how much of a chunk is taken in at once: what a Write
// holds beyond MaxHeld, whatever the size of the chunk it is given.
const streamSlice = 64 << 10

// ErrHeldTooLarge is returned by a Stream when one value it must hold
// before deciding on it (a list item whose subject may follow its fields,
// a mapped value, a key of a mapped object with the bytes before it) is
// larger than StreamOptions.MaxHeld: releasing it unchecked is not an
// option, holding it without bound neither.
var ErrHeldTooLarge = errors.New("redact: a value to hold is larger than the stream's bound")

// ErrNotStreamable is returned by NewStream for a Map whose single body
// subject (SubjectPath without "#") may come anywhere in the body: its
// mask is needed before the first byte can be released.
var ErrNotStreamable = errors.New("redact: the spec's body subject needs the whole body")

// StreamOptions bound a Stream.
type StreamOptions struct {
	// MaxHeld bounds the bytes a Stream holds at once (DefaultMaxHeld when
	// zero). A list item is held whole until its subject is known.
	MaxHeld int
	// Matched, when set (MatchedWords() words), gets the bits of the
	// fields that select a value, as in RewriteMatched; it is written at
	// Close.
	Matched []uint64
	// Item, when set, is called with the bytes of each list item (a
	// SubjectPath with "#") after it was rewritten, before it is released;
	// they are only valid during the call.
	Item func(item []byte)
}

// Stream is a resumable Rewrite: the body is given in chunks split
// anywhere, and the output released as soon as it is known, with the
// memory held bounded by StreamOptions.MaxHeld whatever the body's size.
// The concatenated output of a Stream that closes without error is
// byte-identical to Map.Rewrite's of the whole body, and its Result the
// same; an error (the same class Rewrite returns for the body) ends it,
// and what was released before holds only rewritten values: every value a
// path selects and every list item is held until it has been rewritten.
// A Stream is used by one goroutine.
type Stream struct {
	m       *Map
	r       *rewriter
	matched []uint64
	maxHeld int
	item    func([]byte)

	win []byte // bytes from off on, not yet released or still held
	off int    // absolute offset of win[0]
	pos int    // absolute offset of the next byte to read

	root  uint8 // rootBefore, rootIn, rootAfter
	stack []sframe
	tok   stok
	hold  shold
	err   error
	done  bool
	peak  int
}

const (
	rootBefore = iota
	rootIn
	rootAfter
)

// Frame states: what the container expects next.
const (
	fFirst = iota // after '{' or '[': a key/value or the close
	fItem         // after ',': a key (object) or value (array)
	fColon        // object: after a key
	fValue        // object: after ':'
	fNext         // after a member: ',' or the close
)

// sframe is an open container.
type sframe struct {
	arr     bool
	state   uint8
	n       *node // nil: below the paths, or inside a held value
	emitted bool  // a member was kept (as in rewriter.object/array)
	comma   int   // absolute offset of the last comma, -1 for none
	start   int   // absolute offset where the current member starts
	pend    int   // absolute offset to keep until the member is decided, -1
	child   *node // object: the current key's node
	k, next int   // array: element index and idx cursor
	mask    uint32
	subj    int
	// shape: a container of the kind the paths here do not go through
	// while they go through the other: a member in it is ErrShape.
	shape bool
}

// Token kinds.
const (
	tNone = iota
	tStr  // a string value
	tKey  // an object key
	tNum  // a number
	tLit  // true/false/null
)

// stok is a scalar being read; a string keeps its progress (j, at a
// character boundary), numbers and literals are read again from start.
type stok struct {
	kind  uint8
	start int
	j     int
	flags uint8
	word  string
}

// shold is a value held until it is whole.
type shold struct {
	active bool
	depth  int   // len(stack) when it started
	from   int   // absolute offset kept from (comma or member start)
	value  int   // absolute offset of the value
	start  int   // member start
	comma  int   // the frame's comma (-1)
	n      *node // the value's node
	item   bool  // a list item: its subject is read first
	// skip: a held container whose end is found by counting brackets
	// outside strings (the rewriter validates it whole afterwards); at
	// is the absolute offset reached, in the state below.
	skip  bool
	at    int
	nest  int
	inStr bool
	esc   bool
}

// NewStream starts a streamed rewrite with planner p (nil sees nothing).
func (m *Map) NewStream(p Planner, opt StreamOptions) (*Stream, error) {
	if m.hasSubject && !m.perElement {
		return nil, ErrNotStreamable
	}
	r := m.pool.get()
	r.planner, r.depth, r.last, r.src, r.out = p, 0, 0, nil, nil
	r.mask, r.subj = 0, 0
	s := &Stream{m: m, r: r, maxHeld: opt.MaxHeld, item: opt.Item}
	if s.maxHeld <= 0 {
		s.maxHeld = DefaultMaxHeld
	}
	if opt.Matched != nil {
		s.matched = opt.Matched
		r.matched = r.mbuf
	}
	if !m.perElement {
		// As run(): the caller decided the body's one subject.
		if err := r.plan(nil, true); err != nil {
			s.fail(err)
			return s, nil
		}
	}
	return s, nil
}

// Held returns the most bytes the stream has held at once.
func (s *Stream) Held() int { return s.peak }

// Write appends to dst the output that chunk makes known and returns the
// extended slice. chunk is not retained. After an error every call
// returns it.
func (s *Stream) Write(dst, chunk []byte) ([]byte, error) {
	if s.err != nil {
		return dst, s.err
	}
	if s.done {
		return dst, errors.New("redact: write after close")
	}
	for len(chunk) > 0 {
		n := min(len(chunk), streamSlice)
		s.win = append(s.win, chunk[:n]...)
		chunk = chunk[n:]
		s.r.out = dst
		err := s.step(false)
		dst = s.r.out
		if err != nil {
			s.fail(err)
			return dst, err
		}
		dst = s.release(dst)
		// bound may rewrite the held item (to find the error Rewrite
		// would give): into dst as released, never over it.
		s.r.out = dst
		if err := s.bound(); err != nil {
			s.fail(err)
			return dst, err
		}
	}
	return dst, nil
}

// Close ends the body, appends the rest of the output to dst and returns
// the Result of the whole rewrite. The Stream can't be used after.
func (s *Stream) Close(dst []byte) ([]byte, Result, error) {
	if s.err != nil {
		return dst, Result{}, s.err
	}
	if s.done {
		return dst, Result{}, errors.New("redact: close after close")
	}
	s.r.out = dst
	err := s.step(true)
	dst = s.r.out
	if err == nil && s.root != rootAfter {
		err = s.r.unexpected(len(s.win), "a value")
	}
	if err != nil {
		s.fail(err)
		return dst, Result{}, err
	}
	r := s.r
	dst = append(dst, s.win[r.last:]...)
	for i := range s.matched {
		s.matched[i] |= r.mbuf[i]
	}
	res := r.res
	for _, f := range s.m.sorted {
		if r.hit[f] {
			if res.Redacted == nil {
				res.Redacted = make([]string, 0, len(s.m.fields))
			}
			res.Redacted = append(res.Redacted, s.m.fields[f].path)
		}
	}
	s.done = true
	s.free()
	return dst, res, nil
}

func (s *Stream) fail(err error) {
	s.err = err
	s.free()
}

func (s *Stream) free() {
	if s.r != nil {
		s.m.pool.put(s.r)
		s.r = nil
	}
	s.win, s.stack = nil, nil
}

// safe returns the absolute offset before which nothing is held.
func (s *Stream) safe() int {
	if s.hold.active {
		return s.hold.from
	}
	p := s.pos
	if len(s.stack) > 0 {
		if f := &s.stack[len(s.stack)-1]; f.pend >= 0 && f.pend < p {
			p = f.pend
		}
	}
	if (s.tok.kind == tNum || s.tok.kind == tLit) && s.tok.start < p {
		p = s.tok.start
	}
	return p
}

// release appends what is no longer held to dst and drops it from the
// window.
func (s *Stream) release(dst []byte) []byte {
	r := s.r
	cut := s.safe() - s.off
	if cut > r.last {
		dst = append(dst, s.win[r.last:cut]...)
		r.last = cut
	}
	if cut > 0 && (cut >= len(s.win)/2 || cut >= streamSlice) {
		n := copy(s.win, s.win[cut:])
		s.win = s.win[:n]
		s.off += cut
		r.last -= cut
	}
	return dst
}

// bound fails the stream when it holds more than MaxHeld.
func (s *Stream) bound() error {
	held := len(s.win) - (s.safe() - s.off)
	if held > s.peak {
		s.peak = held
	}
	if held > s.maxHeld {
		if s.hold.active {
			// An item that is invalid before the bound is refused as
			// invalid, as the buffered rewrite refuses it.
			s.r.src = s.win
			h := s.hold
			s.r.depth = h.depth
			var se *SyntaxError
			if err := s.rewriteHeld(h); err != nil && (!errors.As(err, &se) || !truncated(se, len(s.win))) {
				return err
			}
		}
		return fmt.Errorf("%w (%d bytes at offset %d)", ErrHeldTooLarge, held, s.safe())
	}
	return nil
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// step reads the window as far as it goes. At eof the end of the window is
// the end of the body.
func (s *Stream) step(eof bool) error {
	r := s.r
	r.src = s.win
	for {
		if s.hold.skip {
			e, ok := s.skip()
			if !ok {
				if eof {
					return s.heldError(nil, eof)
				}
				return nil
			}
			s.hold.skip = false
			if err := s.end(e); err != nil {
				return s.heldError(err, eof)
			}
			continue
		}
		if s.tok.kind != tNone {
			ok, err := s.token(eof)
			if err != nil || !ok {
				return s.heldError(err, eof)
			}
			continue
		}
		i := s.pos - s.off
		win := s.win
		for i < len(win) && isWS(win[i]) {
			i++
		}
		s.pos = s.off + i
		if i >= len(win) {
			if eof && s.hold.active {
				return s.heldError(nil, eof)
			}
			if eof && s.root != rootAfter {
				return r.unexpected(i, "a value")
			}
			return nil
		}
		c := win[i]
		if len(s.stack) == 0 {
			switch s.root {
			case rootBefore:
				s.root = rootIn
				if err := s.begin(i, s.m.root, false, nil); err != nil {
					return s.heldError(err, eof)
				}
				continue
			case rootAfter:
				return r.errAt(i, "trailing data after the JSON value")
			}
		}
		f := &s.stack[len(s.stack)-1]
		var err error
		if f.arr {
			err = s.arrayByte(f, i, c)
		} else {
			err = s.objectByte(f, i, c)
		}
		if err != nil {
			return s.heldError(err, eof)
		}
	}
}

// heldError: an error (or the end of the body) inside a held value is the
// one Rewrite would have found first — the subject read ahead, the
// planner, a duplicate subject — so the held value is rewritten as far as
// it goes to find it; the reader's own error stands otherwise.
func (s *Stream) heldError(err error, eof bool) error {
	if !s.hold.active || (err == nil && !eof) {
		return err
	}
	h := s.hold
	s.hold.active = false
	r := s.r
	r.src = s.win
	r.depth = h.depth
	if e := s.rewriteHeld(h); e != nil {
		return e
	}
	if err == nil {
		err = r.unexpected(len(s.win), "a value")
	}
	return err
}

// rewriteHeld runs the rewriter's own member code over a held value.
func (s *Stream) rewriteHeld(h shold) (err error) {
	r := s.r
	n0 := len(r.out)
	defer func() {
		if err != nil {
			// Nothing of an item that fails is released.
			r.out = r.out[:n0]
		}
	}()
	var f *sframe
	if len(s.stack) > h.depth-1 && h.depth > 0 {
		f = &s.stack[h.depth-1]
	}
	v := h.value - s.off
	if h.item {
		id, found, err := r.findSubject(v, s.m.subjectRel, &r.idBuf)
		if err != nil {
			return err
		}
		if err := r.plan(id, found); err != nil {
			return err
		}
	}
	comma := -1
	if h.comma >= 0 {
		comma = h.comma - s.off
	}
	emitted := f != nil && f.emitted
	_, emitted, err = r.member(v, h.start-s.off, comma, emitted, h.n)
	if err != nil {
		return err
	}
	if f != nil {
		f.emitted = emitted
	}
	return nil
}

// truncated reports whether a syntax error in a window of n bytes may only
// be its end: more bytes could make it valid (a string, an escape, a
// literal or a number cut off).
func truncated(se *SyntaxError, n int) bool {
	return se.Offset >= n-6 || se.Msg == "unterminated string"
}

// skip goes on looking for the end of the held container: e is the
// absolute offset after its closing bracket, ok false when the window ends
// first. Only brackets outside strings count; whether the value is valid
// is the rewriter's to say.
func (s *Stream) skip() (e int, ok bool) {
	h := &s.hold
	win := s.win
	j := h.at - s.off
	for j < len(win) {
		if h.inStr {
			if h.esc {
				h.esc = false
				j++
				continue
			}
			// Eight bytes at a time through plain string content.
			for j+8 <= len(win) {
				x := binary.LittleEndian.Uint64(win[j:])
				q := x ^ (lsb * '"')
				b := x ^ (lsb * '\\')
				if m := ((q-lsb)&^q | (b-lsb)&^b) & msb; m != 0 {
					j += bits.TrailingZeros64(m) >> 3
					break
				}
				j += 8
			}
			if j >= len(win) {
				break
			}
			switch win[j] {
			case '"':
				h.inStr = false
			case '\\':
				h.esc = true
			}
			j++
			continue
		}
		switch win[j] {
		case '"':
			h.inStr = true
		case '{', '[':
			h.nest++
		case '}', ']':
			if h.nest--; h.nest == 0 {
				h.at = s.off + j + 1
				return h.at, true
			}
		}
		j++
	}
	h.at = s.off + j
	s.pos = h.at
	return 0, false
}

// begin starts the value at window index i whose node is n (nil below
// the paths); item marks a list element with its own subject.
func (s *Stream) begin(i int, n *node, item bool, f *sframe) error {
	win := s.win
	if f != nil && f.n != nil && !s.hold.active {
		if n != nil && (item || n.fields != nil || n.subject) {
			from := f.start
			if f.comma >= 0 {
				from = f.comma
			}
			s.hold = shold{active: true, depth: len(s.stack), from: from, value: s.off + i,
				start: f.start, comma: f.comma, n: n, item: item}
			n = nil
		}
		f.pend = -1
	}
	if s.hold.active {
		n = nil
	}
	if s.hold.active && s.hold.value == s.off+i && (win[i] == '{' || win[i] == '[') {
		// The held value is a container: its end is found fast, and the
		// rewriter reads it (validating) once whole.
		s.hold.skip, s.hold.at, s.hold.nest = true, s.off+i+1, 1
		s.pos = s.off + i + 1
		return nil
	}
	switch c := win[i]; {
	case c == '{' || c == '[':
		if len(s.stack)+1 > MaxDepth {
			return s.r.errAt(i, fmt.Sprintf("nesting deeper than %d", MaxDepth))
		}
		arr := c == '['
		// Below the root, a container that is not the mapped shape may
		// only be empty (as the rewriter's holds).
		shape := n != nil && len(s.stack) > 0 && (arr && !n.arr && n.obj || !arr && n.list)
		if n != nil && (arr && !n.arr || !arr && !n.obj) || shape {
			n = nil
		}
		s.stack = append(s.stack, sframe{arr: arr, n: n, comma: -1, pend: -1, mask: s.r.mask, subj: s.r.subj, shape: shape})
		s.pos = s.off + i + 1
	case c == '"':
		s.tok = stok{kind: tStr, start: s.off + i, j: s.off + i + 1}
	case c == '-' || isDigit(c):
		s.tok = stok{kind: tNum, start: s.off + i}
	case c == 't':
		s.tok = stok{kind: tLit, start: s.off + i, word: "true"}
	case c == 'f':
		s.tok = stok{kind: tLit, start: s.off + i, word: "false"}
	case c == 'n':
		s.tok = stok{kind: tLit, start: s.off + i, word: "null"}
	default:
		return s.r.unexpected(i, "a value")
	}
	return nil
}

// end is called when the value that ends at absolute offset e is whole.
func (s *Stream) end(e int) error {
	s.pos = e
	if s.hold.active && len(s.stack) == s.hold.depth {
		h := s.hold
		if held := e - h.from; held > s.maxHeld {
			// Whole within one slice, but over the bound all the same.
			return fmt.Errorf("%w (%d bytes at offset %d)", ErrHeldTooLarge, held, h.from)
		}
		s.hold.active = false
		r := s.r
		r.src = s.win
		r.depth = h.depth
		if err := s.rewriteHeld(h); err != nil {
			return err
		}
		if h.item && s.item != nil {
			s.item(s.win[h.value-s.off : e-s.off])
		}
		// Nothing in the value is read again; the rewriter copied or cut
		// what it had to up to its end.
		if len(s.stack) > 0 {
			s.stack[len(s.stack)-1].state = fNext
		} else {
			s.root = rootAfter
		}
		return nil
	}
	if len(s.stack) == 0 {
		s.root = rootAfter
		return nil
	}
	f := &s.stack[len(s.stack)-1]
	f.state = fNext
	if f.n != nil && !s.hold.active {
		f.emitted = true
	}
	return nil
}

func (s *Stream) objectByte(f *sframe, i int, c byte) error {
	r := s.r
	switch f.state {
	case fFirst, fItem:
		if c == '}' && f.state == fFirst {
			return s.close(i)
		}
		if f.shape {
			return fmt.Errorf("%w (offset %d)", ErrShape, s.off+i)
		}
		if c != '"' {
			return r.unexpected(i, "a string key")
		}
		f.start = s.off + i
		if f.n != nil && !s.hold.active && f.pend < 0 {
			f.pend = f.start
		}
		s.tok = stok{kind: tKey, start: s.off + i, j: s.off + i + 1}
		return nil
	case fColon:
		if c != ':' {
			return r.unexpected(i, "':'")
		}
		f.state = fValue
		s.pos = s.off + i + 1
		return nil
	case fValue:
		var n *node
		if f.n != nil && !s.hold.active {
			n = f.child
		}
		return s.begin(i, n, false, f)
	default: // fNext
		switch c {
		case ',':
			s.comma(f, i)
			f.state = fItem
			return nil
		case '}':
			return s.close(i)
		}
		return r.unexpected(i, "',' or '}'")
	}
}

func (s *Stream) arrayByte(f *sframe, i int, c byte) error {
	r := s.r
	switch f.state {
	case fFirst, fItem:
		if c == ']' && f.state == fFirst {
			return s.close(i)
		}
		if f.shape {
			return fmt.Errorf("%w (offset %d)", ErrShape, s.off+i)
		}
		f.start = s.off + i
		var el *node
		item := false
		if f.n != nil && !s.hold.active {
			el = f.n.element(f.k, &f.next)
			item = el != nil && el.scope
		}
		f.k++
		return s.begin(i, el, item, f)
	default: // fNext
		switch c {
		case ',':
			s.comma(f, i)
			f.state = fItem
			return nil
		case ']':
			return s.close(i)
		}
		return r.unexpected(i, "',' or ']'")
	}
}

// comma handles the comma at i: cut when every member before it was
// removed (as the rewriter does), kept in view until the next member is
// decided.
func (s *Stream) comma(f *sframe, i int) {
	s.pos = s.off + i + 1
	if f.n == nil || s.hold.active {
		return
	}
	if !f.emitted {
		s.r.replace(i, i+1, nil)
	}
	f.comma = s.off + i
	f.pend = f.comma
}

// close ends the container whose closing bracket is at i.
func (s *Stream) close(i int) error {
	f := s.stack[len(s.stack)-1]
	if f.arr && f.n != nil && !s.hold.active {
		// Per-element subjects hold only inside their element.
		s.r.mask, s.r.subj = f.mask, f.subj
	}
	s.stack = s.stack[:len(s.stack)-1]
	return s.end(s.off + i + 1)
}

// token goes on reading the scalar in s.tok; ok is false when the window
// ends before it (more is needed).
func (s *Stream) token(eof bool) (ok bool, err error) {
	r := s.r
	win := s.win
	t := &s.tok
	switch t.kind {
	case tStr, tKey:
		j := t.j - s.off
		for {
			for j < len(win) && win[j] >= 0x20 && win[j] < 0x80 && win[j] != '"' && win[j] != '\\' {
				j++
			}
			if j >= len(win) {
				t.j = s.off + j
				s.pos = t.j
				if eof {
					return false, r.errAt(t.start-s.off, "unterminated string")
				}
				return false, nil
			}
			switch c := win[j]; {
			case c == '"':
				j++
				return true, s.endString(j)
			case c == '\\':
				t.flags |= strEsc
				if j+1 >= len(win) {
					t.j, s.pos = s.off+j, s.off+j
					if eof {
						return false, r.errAt(t.start-s.off, "unterminated string")
					}
					return false, nil
				}
				switch win[j+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					j += 2
				case 'u':
					for k := j + 2; k < j+6; k++ {
						if k >= len(win) {
							t.j, s.pos = s.off+j, s.off+j
							if eof {
								return false, r.errAt(j, "truncated \\u escape")
							}
							return false, nil
						}
						if hexVal(win[k]) < 0 {
							return false, r.errAt(k, "invalid hex digit in \\u escape")
						}
					}
					j += 6
				default:
					return false, r.errAt(j, fmt.Sprintf("invalid escape \\%c", win[j+1]))
				}
			case c < 0x20:
				return false, r.errAt(j, "control character in string")
			default:
				t.flags |= strHigh
				if !utf8.FullRune(win[j:]) && !eof {
					t.j, s.pos = s.off+j, s.off+j
					return false, nil
				}
				ru, size := utf8.DecodeRune(win[j:])
				if ru == utf8.RuneError && size <= 1 {
					return false, r.errAt(j, "invalid UTF-8 in string")
				}
				j += size
			}
		}
	case tNum:
		i := t.start - s.off
		j, complete := numEnd(win, i)
		if !complete && !eof {
			s.pos = s.off + j
			return false, nil
		}
		sc := scanner{src: win}
		if j, err = sc.num(i); err != nil {
			return false, err
		}
		t.kind = tNone
		return true, s.end(s.off + j)
	default: // tLit
		i := t.start - s.off
		if len(win)-i < len(t.word) && !eof {
			s.pos = s.off + len(win)
			return false, nil
		}
		sc := scanner{src: win}
		j, err := sc.lit(i, t.word)
		if err != nil {
			return false, err
		}
		t.kind = tNone
		return true, s.end(s.off + j)
	}
}

// endString finishes the string in s.tok whose closing quote ends before
// window index j.
func (s *Stream) endString(j int) error {
	t := s.tok
	s.tok.kind = tNone
	if t.kind == tStr {
		return s.end(s.off + j)
	}
	// A key: find its node while its bytes are held (f.pend).
	f := &s.stack[len(s.stack)-1]
	f.state = fColon
	s.pos = s.off + j
	if f.n == nil || s.hold.active {
		return nil
	}
	r := s.r
	key := s.win[t.start-s.off+1 : j-1]
	high := t.flags&strHigh != 0
	if t.flags&strEsc != 0 {
		r.keyBuf = unescape(r.keyBuf[:0], key)
		key = r.keyBuf
		high = hasHighByte(key)
	}
	f.child = f.n.lookup(key, high, s.m.fold)
	if f.child == nil {
		// Nothing below this key is rewritten: no need to keep it.
		f.pend = -1
	}
	return nil
}

// numEnd finds the end of the number at i; complete is false when the
// window ends inside it (more digits may follow).
func numEnd(win []byte, i int) (j int, complete bool) {
	j = i
	for j < len(win) {
		c := win[j]
		if isDigit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			j++
			continue
		}
		return j, true
	}
	return j, false
}
